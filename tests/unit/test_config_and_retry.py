"""Settings (flags > environment > TOML > defaults) and the retry schedule."""

from __future__ import annotations

import random

import pytest

from posthouse.server.config import RelayTarget, load_settings, parse_duration, parse_schedule
from posthouse.server.domain.retry import RetryPolicy
from posthouse.server.errors import ConfigurationError


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("2m", 120), ("1h", 3600), ("5d", 432000),
                                                ("250ms", 0.25), ("7", 7), (" 1.5m ", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 weeks", "-1s", "s"])
def test_bad_durations_are_configuration_errors(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_duration(text)


def test_schedule_parses_in_order() -> None:
    assert parse_schedule("30s,2m,10m,1h") == (30, 120, 600, 3600)


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://relay.example.com:2525", RelayTarget("relay.example.com", 2525, "none", None, None)),
    ("smtp+starttls://user:p%40ss@relay.example.com:587",
     RelayTarget("relay.example.com", 587, "starttls", "user", "p@ss")),
    ("smtps://u:p@relay.example.com", RelayTarget("relay.example.com", 465, "implicit", "u", "p")),
    ("smtp://127.0.0.1", RelayTarget("127.0.0.1", 25, "none", None, None)),
])
def test_relay_urls(url: str, expected: RelayTarget) -> None:
    assert RelayTarget.from_url(url) == expected


@pytest.mark.parametrize("url", ["http://x", "smtp://", "relay.example.com:25", "smtp://h:notaport"])
def test_bad_relay_urls(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"relay URL|port"):
        RelayTarget.from_url(url)


def test_precedence_flags_over_environment_over_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "posthouse.toml"
    config.write_text('http = "127.0.0.1:7000"\nretry_schedule = "1m"\nworker_concurrency = 3\n')
    settings = load_settings({"http": "127.0.0.1:9000"},
                             environ={"POSTHOUSE_HTTP": "127.0.0.1:8000", "POSTHOUSE_RETRY_SCHEDULE": "5s,10s"},
                             config_file=str(config))
    assert settings.http_address == ("127.0.0.1", 9000)
    assert settings.retry_delays == (5, 10)
    assert settings.worker_concurrency == 3


@pytest.mark.parametrize(("overrides", "message"), [
    ({"delivery": "carrier-pigeon"}, "delivery mode"),
    ({"delivery": "relay"}, "relay URL"),
    ({"http": "nonsense"}, "HTTP address"),
    ({"database_url": "mysql://x"}, "database URL"),
    ({"retry_schedule": "soon"}, "duration"),
    ({"roles": "api,mailer"}, "role"),
    ({"worker_concurrency": "many"}, "integer"),
])
def test_bad_settings_are_one_clear_error(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(overrides, environ={})


def test_unknown_key_in_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "p.toml"
    config.write_text("htpp = 1\n")
    with pytest.raises(ConfigurationError, match="unknown setting 'htpp'"):
        load_settings(environ={}, config_file=str(config))


def test_default_database_is_sqlite_in_the_data_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({"data_dir": str(tmp_path)}, environ={})
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'posthouse.db'}"


def test_retry_policy_repeats_the_last_delay_and_honours_hints() -> None:
    policy = RetryPolicy((10, 60, 300), max_age=3600, jitter=0.0)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4, 9)] == [10, 60, 300, 300, 300]
    assert policy.delay_after(1, hint=120) == 120  # "try again in 120 s" wins over a shorter delay
    assert policy.delay_after(1, hint=10_000) == 300  # but never beyond the longest delay
    assert policy.is_expired(3600) and not policy.is_expired(3599)


def test_retry_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy((100,), max_age=1000, jitter=0.1)
    rng = random.Random(1)
    delays = [policy.delay_after(1, rng=rng) for _ in range(200)]
    assert min(delays) >= 90 and max(delays) <= 110 and len(set(delays)) > 100
