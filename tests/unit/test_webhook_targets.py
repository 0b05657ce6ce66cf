"""Webhook targets against SSRF: which URLs, resolved addresses and custom headers are allowed."""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_network

import pytest

from posthouse.server.webhooks.targets import (
    WebhookHeaderError,
    WebhookUrlError,
    resolve_and_check,
    validate_webhook_headers,
    validate_webhook_url,
)

ALLOWED = [
    "https://hooks.example.com/postmark",
    "http://hooks.example.com:8080/a/b?c=d#e",
    "HTTPS://Hooks.Example.COM/",
    "http://8.8.8.8/",
    "http://[2606:4700:4700::1111]:8443/",
    # Numeric forms are what the resolver makes of them (inet_aton): here 8.8.8.8.
    "http://134744072/",
]

# Loopback is refused unless the operator lists it (webhook_allowed_networks): a server token must not
# read the HTTP services of the machine Posthouse runs on.
LOOPBACK = [
    "http://127.0.0.1:3000/hook",
    "http://127.255.255.254/",
    "http://[::1]/",
    "http://localhost:8000/",
    "http://api.localhost/",  # RFC 6761 §6.3: every *.localhost name is loopback
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback is loopback
    # Numeric forms the resolver reads as 127.0.0.1 (inet_aton).
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://127.1/",
]
LOOPBACK_NETWORKS: list[IPv4Network | IPv6Network] = [ip_network("127.0.0.0/8"), ip_network("::1/128")]

# Non-ASCII hosts are normalised once (IDNA, UTS #46: NFKC-style folding, "。" read as a dot), and the
# normalised URL is what is checked, saved and posted to.
NORMALISED = [
    ("https://ουτοπία.δπθ.gr/hook", "https://xn--kxae4bafwg.xn--pxaix.gr/hook"),
    ("https://ｈｏｏｋｓ．example。com/a?b=ｃ", "https://hooks.example.com/a?b=ｃ"),
    ("http://８。８。８。８/", "http://8.8.8.8/"),
]

REFUSED = [
    ("ftp://example.com/", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("gopher://127.0.0.1:25/", "http or https"),
    ("javascript:alert(1)", "http or https"),
    ("//example.com/hook", "absolute"),
    ("example.com/hook", "absolute"),
    ("http:///path", "no host"),
    ("http://", "no host"),
    ("http://:80/", "no host"),
    ("https://user:pass@example.com/", "HttpAuth"),
    ("https://user@example.com/", "HttpAuth"),
    ("https://@example.com/", "HttpAuth"),
    ("http://example.com:99999/", "malformed"),
    ("http://example.com:0/", "port"),
    ("http://example.com:x/", "malformed"),
    ("http://exa mple.com/", "spaces"),
    ("http://example.com\n.evil/", "control"),
    ("http://evil.example\\@127.0.0.1/", "backslash"),
    # RFC 1918
    ("http://10.0.0.1/", "private"),
    ("http://10.255.255.255:8080/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.1/", "private"),
    # link-local, including the cloud metadata service
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "zone"),
    # unique-local and site-local IPv6
    ("http://[fc00::1]/", "unique-local"),
    ("http://[fd12:3456:789a::1]/", "unique-local"),
    ("http://[fec0::1]/", "site-local"),
    # unspecified: 0.0.0.0 reaches this machine on Linux
    ("http://0.0.0.0:8080/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://0/", "unspecified"),
    # multicast, broadcast, reserved, shared address space (CGNAT), documentation, benchmarking
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "private"),
    ("http://240.0.0.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.127.255.255/", "carrier-grade NAT"),
    ("http://192.0.2.1/", "private"),
    ("http://198.18.0.1/", "private"),
    ("http://[2001:db8::1]/", "private"),
    # IPv4 hidden in IPv6: mapped, NAT64, 6to4, the deprecated compatible form
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::ffff:a9fe:a9fe]/", "link-local"),
    ("http://[::ffff:0:0]/", "unspecified"),
    ("http://[64:ff9b::a00:1]/", "reserved"),
    ("http://[2002:a00:1::1]/", "embeds the non-public 10.0.0.1"),
    ("http://[2002:7f00:1::1]/", "embeds the non-public 127.0.0.1"),
    ("http://[::10.0.0.1]/", "reserved"),
    # numeric forms the resolver reads as private addresses
    ("http://167772161/", "10.0.0.1"),
    ("http://0xa.0.0.1/", "10.0.0.1"),
    ("http://012.0.0.1/", "10.0.0.1"),
    ("http://0xA9FEA9FE/", "169.254.169.254"),
    ("http://10.0.0.1./", "private"),
    ("http://99999999999/", "neither a valid address"),
    ("http://[not-an-ip]/", "malformed"),
]


@pytest.mark.parametrize("url", ALLOWED)
def test_allowed(url: str) -> None:
    assert validate_webhook_url(url) == url


@pytest.mark.parametrize("url", LOOPBACK)
def test_loopback_only_when_the_operator_allows_it(url: str) -> None:
    with pytest.raises(WebhookUrlError, match="loopback"):
        validate_webhook_url(url)
    assert validate_webhook_url(url, allowed_networks=LOOPBACK_NETWORKS) == url


@pytest.mark.parametrize(("url", "normalised"), NORMALISED)
def test_non_ascii_hosts_are_normalised_once(url: str, normalised: str) -> None:
    assert validate_webhook_url(url) == normalised
    assert validate_webhook_url(normalised) == normalised


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # Full-width and ideographic digits and dots: what the HTTP client would connect to is checked.
        ("http://１０．０．０．１/", "10.0.0.1 is a private address"),
        ("http://１２７。０。０。１:8080/", "127.0.0.1 is a loopback address"),
        ("http://①⑥⑨.254.169.254/", "169.254.169.254 is a link-local address"),
        ("http://192．168．0．1/", "192.168.0.1 is a private address"),
        ("http://ｌｏｃａｌｈｏｓｔ/", "localhost"),
        ("http://evil．com／@127.0.0.1/", "malformed"),  # urlsplit's own NFKC check (CVE-2019-9636)
        ("http://hooks.example.com:８０８０/", "malformed"),
        ("http://٣.0.0.1/", "not a valid name"),
    ],
)
def test_non_ascii_hosts_are_checked_as_what_they_become(url: str, reason: str) -> None:
    with pytest.raises(WebhookUrlError, match=re.escape(reason)):
        validate_webhook_url(url)


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_refused(url: str, reason: str) -> None:
    with pytest.raises(WebhookUrlError, match=re.escape(reason)) as caught:
        validate_webhook_url(url)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("url", "networks"),
    [
        ("http://10.1.2.3/", ["10.0.0.0/8"]),
        ("http://192.168.7.7:8080/", ["192.168.7.0/24"]),
        ("http://[fd00::5]/", ["fd00::/8"]),
        ("http://[::ffff:10.0.0.1]/", ["10.0.0.0/8"]),  # the mapped address is what gets reached
        ("http://169.254.1.1/", ["169.254.1.0/24"]),
    ],
)
def test_allowed_networks_open_a_hole(url: str, networks: list[str]) -> None:
    allowed: list[IPv4Network | IPv6Network] = [ip_network(n) for n in networks]
    with pytest.raises(WebhookUrlError):
        validate_webhook_url(url)
    assert validate_webhook_url(url, allowed_networks=allowed) == url


def test_allowed_networks_are_exact() -> None:
    with pytest.raises(WebhookUrlError, match="private"):
        validate_webhook_url("http://10.0.0.1/", allowed_networks=[ip_network("10.1.0.0/16")])
    with pytest.raises(WebhookUrlError, match="private"):
        validate_webhook_url("http://10.0.0.1/", allowed_networks=[ip_network("fd00::/8")])


# --- resolve_and_check -------------------------------------------------------------------------


def fake_resolver(table: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    calls: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append((host, port))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "localhost", "127.0.0.1", "::1"])
async def test_the_system_resolver_decides_numeric_forms(host: str) -> None:
    with pytest.raises(WebhookUrlError, match="loopback"):
        await resolve_and_check(host, 80)
    addresses = await resolve_and_check(host, 80, LOOPBACK_NETWORKS)
    assert addresses and all(a in ("127.0.0.1", "::1") for a in addresses)


@pytest.mark.parametrize("host", ["167772161", "0xa.1", "10.0.0.1", "::ffff:10.0.0.1", "169.254.169.254"])
async def test_the_system_resolver_cannot_launder_private_addresses(host: str) -> None:
    with pytest.raises(WebhookUrlError):
        await resolve_and_check(host, 80)


async def test_a_public_name_resolves() -> None:
    resolver = fake_resolver({"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    addresses = await resolve_and_check("hooks.example.com", 443, resolver=resolver)
    assert addresses == ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    assert resolver.calls == [("hooks.example.com", 443)]


async def test_any_forbidden_address_refuses_the_name() -> None:
    # DNS rebinding: the attacker's name answers a public address and a private one; a client
    # that tries the next address on failure would reach the private one.
    resolver = fake_resolver({"rebind.example.com": ["93.184.215.14", "10.0.0.7"]})
    with pytest.raises(WebhookUrlError, match=r"rebind\.example\.com \(10\.0\.0\.7\) is a private address"):
        await resolve_and_check("rebind.example.com", 80, resolver=resolver)


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "::ffff:169.254.169.254", "fd00::1", "0.0.0.0", "100.64.1.1", "fe80::1%eth0"]
)
async def test_a_name_for_a_forbidden_address_is_refused(address: str) -> None:
    resolver = fake_resolver({"metadata.example.com": [address]})
    with pytest.raises(WebhookUrlError, match=r"metadata\.example\.com"):
        await resolve_and_check("metadata.example.com", 80, resolver=resolver)


async def test_allowed_networks_apply_to_resolved_addresses() -> None:
    resolver = fake_resolver({"internal.example.com": ["10.0.0.7", "10.0.0.7", "127.0.0.1"]})
    allowed: list[IPv4Network | IPv6Network] = [ip_network("10.0.0.0/24")]
    with pytest.raises(WebhookUrlError, match=r"\(127\.0\.0\.1\) is a loopback address"):
        await resolve_and_check("internal.example.com", 80, allowed, resolver=resolver)
    allowed.append(ip_network("127.0.0.0/8"))
    assert await resolve_and_check("internal.example.com", 80, allowed, resolver=resolver) == ["10.0.0.7", "127.0.0.1"]


async def test_literals_are_checked_without_the_resolver() -> None:
    resolver = fake_resolver({})
    assert await resolve_and_check("8.8.8.8", 80, resolver=resolver) == ["8.8.8.8"]
    with pytest.raises(WebhookUrlError):
        await resolve_and_check("10.0.0.1", 80, resolver=resolver)
    assert resolver.calls == []


async def test_an_unknown_name_is_an_os_error_to_retry() -> None:
    with pytest.raises(OSError, match="not known") as caught:
        await resolve_and_check("nowhere.example.com", 80, resolver=fake_resolver({}))
    assert not isinstance(caught.value, WebhookUrlError)
    with pytest.raises(socket.gaierror):
        await resolve_and_check("empty.example.com", 80, resolver=fake_resolver({"empty.example.com": []}))


# --- Custom headers ----------------------------------------------------------------------------


def test_ordinary_custom_headers_pass() -> None:
    headers = [("X-Api-Key", "s3cret"), ("Authorization", "Bearer abc"), ("x-trace", ""), ("User-Agent", "mine")]
    assert validate_webhook_headers(headers) == headers


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("X-Evil", "a\r\nX-Injected: 1", "line break"),
        ("X-Evil", "a\nb", "line break"),
        ("X-Evil", "a\x00b", "NUL"),
        ("X Evil", "1", "not a valid HTTP field name"),
        ("X-Evil:", "1", "not a valid HTTP field name"),
        ("", "1", "not a valid HTTP field name"),
        ("Content-Type", "text/plain", "set by Posthouse"),
        ("content-length", "0", "set by Posthouse"),
        ("Transfer-Encoding", "chunked", "set by Posthouse"),
        ("Host", "internal.example.com", "set by Posthouse"),
        ("Connection", "keep-alive", "set by Posthouse"),
        ("Accept-Encoding", "gzip", "set by Posthouse"),
        ("webhook-id", "forged", "set by Posthouse"),
        ("Webhook-Signature", "v1,forged", "set by Posthouse"),
        ("webhook-timestamp", "1", "set by Posthouse"),
    ],
)
def test_refused_custom_headers(name: str, value: str, reason: str) -> None:
    with pytest.raises(WebhookHeaderError, match=re.escape(reason)):
        validate_webhook_headers([("X-Fine", "1"), (name, value)])


def test_authorization_conflicts_with_http_auth() -> None:
    with pytest.raises(WebhookHeaderError, match="HttpAuth"):
        validate_webhook_headers([("authorization", "Bearer x")], has_basic_auth=True)
    assert validate_webhook_headers([("X-Key", "1")], has_basic_auth=True) == [("X-Key", "1")]
