"""The log formats, the redaction of secrets and the rate limiter for destinations that keep failing."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from posthouse.server.logs import (
    REDACTED,
    REQUEST_ID,
    HumanFormatter,
    JsonFormatter,
    RepeatedFailures,
    configure_logging,
    log_event,
    redact_url,
)


def _record(message: str = "http request", level: int = logging.INFO, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("posthouse.http", level, __file__, 1, message, (), None)
    record.fields = fields
    return record


def test_a_json_line_carries_the_event_and_its_fields() -> None:
    line = JsonFormatter().format(_record(method="POST", path="/email", status=200, ms=1.25, server_id=3))
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["event"] == "http request" and entry["logger"] == "posthouse.http" and entry["level"] == "info"
    assert {k: entry[k] for k in ("method", "path", "status", "ms", "server_id")} == \
        {"method": "POST", "path": "/email", "status": 200, "ms": 1.25, "server_id": 3}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])


def test_a_human_line_reads_as_key_value_pairs_and_quotes_what_needs_it() -> None:
    line = HumanFormatter().format(_record("relay failing", logging.WARNING, destination="relay.example:587",
                                           reason="connect failed: [Errno 111] Connection refused", status=None))
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} WARNING posthouse\.http  relay failing ", line)
    assert "destination=relay.example:587" in line
    assert 'reason="connect failed: [Errno 111] Connection refused"' in line
    assert line.endswith("status=-")


@pytest.mark.parametrize("formatter", [HumanFormatter(), JsonFormatter()], ids=["human", "json"])
@pytest.mark.parametrize("name", ["token", "server_token", "password", "Authorization", "webhook_secret", "api_key"])
def test_a_field_named_like_a_secret_is_never_written(formatter: logging.Formatter, name: str) -> None:
    line = formatter.format(_record(**{name: "hunter2-very-secret"}))
    assert "hunter2-very-secret" not in line
    assert REDACTED in line


def test_a_message_cannot_forge_a_second_line_in_either_format() -> None:
    record = _record("refused mail from %s")
    record.args = ("x\n2025-01-01 00:00:00.000 ERROR posthouse forged",)
    assert "\n" not in HumanFormatter().format(record)
    assert "\n" not in JsonFormatter().format(record)
    field = _record(reason="a\nb")
    assert "\n" not in HumanFormatter().format(field)


def test_a_line_logged_during_a_request_carries_its_request_id() -> None:
    reset = REQUEST_ID.set("req-42")
    try:
        entry = json.loads(JsonFormatter().format(_record("store failure")))
        human = HumanFormatter().format(_record("store failure"))
    finally:
        REQUEST_ID.reset(reset)
    assert entry["request_id"] == "req-42"
    assert human.endswith("request_id=req-42")
    assert "request_id" not in json.loads(JsonFormatter().format(_record("outside")))


def test_an_exception_is_kept_inside_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("posthouse", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:pa55@hooks.example.com/postmark?token=abc#frag", "https://hooks.example.com/postmark"),
    ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
    ("https://[2001:db8::1]:8443/h?k=v", "https://[2001:db8::1]:8443/h"),
    ("smtp+starttls://apikey:SG.secret@smtp.example.net:587", "smtp+starttls://smtp.example.net:587"),
    ("http://[::1", "[unparseable URL]"),
])
def test_a_url_is_logged_without_credentials_query_or_fragment(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_configure_logging_writes_every_logger_through_one_handler_in_the_chosen_format() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream)
        log_event(logging.getLogger("posthouse.test"), logging.INFO, "hello", n=1)
        logging.getLogger("uvicorn.error").warning("a library line")
        logging.getLogger("posthouse.test").debug("not at info")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["logger"], e["event"]) for e in entries] == [("posthouse.test", "hello"), ("uvicorn.error",
                                                                                         "a library line")]
    assert entries[0]["n"] == 1


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> _Lines:
    handler = _Lines()
    logger = logging.getLogger("posthouse.test.failures")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)


def test_a_destination_that_keeps_failing_is_one_warning_per_interval_with_the_count_not_logged(lines: _Lines) -> None:
    clock = _Clock()
    failures = RepeatedFailures(logging.getLogger("posthouse.test.failures"), interval=60.0, clock=clock)
    for _ in range(5):  # within the first interval: one line
        failures.failed("relay", "relay.example:25", "connection refused")
        clock.now += 1
    failures.failed("relay", "other.example:25", "timed out")  # another destination has its own line
    clock.now += 60
    failures.failed("relay", "relay.example:25", "connection refused")
    shown = [(r.levelno, r.getMessage(), dict(r.fields)) for r in lines.records]  # type: ignore[attr-defined]
    assert shown == [
        (logging.WARNING, "relay failing", {"destination": "relay.example:25", "reason": "connection refused"}),
        (logging.WARNING, "relay failing", {"destination": "other.example:25", "reason": "timed out"}),
        (logging.WARNING, "relay still failing", {"destination": "relay.example:25", "reason": "connection refused",
                                                  "failures": 6, "suppressed": 4}),
    ]
    failures.succeeded("relay", "relay.example:25")
    failures.succeeded("relay", "relay.example:25")  # said once
    assert [(r.levelno, r.getMessage(), r.fields["failures"]) for r in lines.records[3:]] == [  # type: ignore[attr-defined]
        (logging.INFO, "relay recovered", 6)]
    failures.failed("relay", "relay.example:25", "connection refused")  # failing again: at once
    assert lines.records[-1].getMessage() == "relay failing"


def test_the_failure_memory_is_bounded(lines: _Lines) -> None:
    failures = RepeatedFailures(logging.getLogger("posthouse.test.failures"), max_destinations=3, clock=_Clock())
    for n in range(10):
        failures.failed("webhook", f"https://h{n}.example/", "HTTP 500")
    assert len(failures._failing) == 3
    assert len(lines.records) == 10  # each new destination is one line, never more
