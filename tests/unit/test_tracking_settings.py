"""The `tracking_base_url` setting: its default, and only URLs that tracked mail can carry unescaped."""

from __future__ import annotations

import pytest

from posthouse.server.config import load_settings
from posthouse.server.domain.links import BASE_URL
from posthouse.server.errors import ConfigurationError


def test_empty_means_the_tracking_listeners_address() -> None:
    assert load_settings({}, environ={}).resolved_tracking_base_url == "http://127.0.0.1:8081"


@pytest.mark.parametrize(("given", "resolved"), [
    ("https://track.example.com", "https://track.example.com"),
    ("https://track.example.com/", "https://track.example.com"),
    ("http://10.0.0.5:8081/t/", "http://10.0.0.5:8081/t"),
    ("https://[2001:db8::1]:8443/x_y~z", "https://[2001:db8::1]:8443/x_y~z"),
])
def test_a_base_url_is_used_without_its_trailing_slash(given: str, resolved: str) -> None:
    settings = load_settings({}, environ={"POSTHOUSE_TRACKING_BASE_URL": given})
    assert settings.resolved_tracking_base_url == resolved
    assert BASE_URL.fullmatch(resolved)  # what domain/links.py recognises when it shows the original


@pytest.mark.parametrize("bad", [
    "track.example.com", "ftp://track.example.com", "https://track.example.com/?a=1", "https://t.example/#x",
    'https://t.example/"', "https://t.example/a&b", "https://t example/", "https://t.example/<x>",
    "https://t.example/ä",
])
def test_a_url_that_would_need_escaping_is_a_start_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="tracking_base_url"):
        load_settings({"tracking_base_url": bad}, environ={})
