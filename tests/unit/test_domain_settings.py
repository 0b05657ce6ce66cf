"""The settings of sending domains and sender signatures (issue 14): parsed, defaulted and refused clearly."""

from __future__ import annotations

import pytest

from posthouse.server.config import load_settings
from posthouse.server.errors import ConfigurationError
from posthouse.server.services.dkim_keys import KEY_KINDS


@pytest.mark.parametrize(("text", "servers"), [
    ("", ()),
    ("127.0.0.1:5353", (("127.0.0.1", 5353),)),
    ("192.0.2.1, 192.0.2.2:53", (("192.0.2.1", 53), ("192.0.2.2", 53))),
    ("[::1]:5353,::1,[2001:db8::1]", (("::1", 5353), ("::1", 53), ("2001:db8::1", 53))),
])
def test_dns_nameservers(text: str, servers: tuple[tuple[str, int], ...]) -> None:
    assert load_settings({"dns_nameservers": text}, environ={}).dns_servers == servers


@pytest.mark.parametrize(("overrides", "message"), [
    ({"dns_nameservers": "resolver.example.com"}, "invalid DNS server"),
    ({"dns_nameservers": "127.0.0.1:99999"}, "invalid port"),
    ({"dns_nameservers": "[::1]:x"}, "invalid port"),
    ({"dns_timeout": "soon"}, "invalid duration"),
    ({"dkim_keys": "dsa"}, "invalid dkim_keys"),
    ({"sender_policy": "strict"}, "invalid sender_policy"),
    ({"api_base_url": "ftp://mail.example.com"}, "invalid api_base_url"),
    ({"api_base_url": "https://mail.example.com/?x=1"}, "invalid api_base_url"),
])
def test_bad_domain_settings_are_one_clear_error(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(overrides, environ={})


def test_defaults_and_key_kinds() -> None:
    settings = load_settings({"http": "127.0.0.1:9000"}, environ={"POSTHOUSE_DKIM_KEYS": "both"})
    assert (settings.sender_policy, settings.dkim_keys) == ("any", "both")
    assert settings.resolved_api_base_url == "http://127.0.0.1:9000"
    assert load_settings({"api_base_url": "https://mail.example.com/api/"}, environ={}).resolved_api_base_url == \
        "https://mail.example.com/api"
    assert [len(KEY_KINDS[kind]) for kind in ("rsa", "ed25519", "both")] == [1, 1, 2]
