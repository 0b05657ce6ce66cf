"""One `send(email)` whatever the road: `transport_from_url`, the API transport, the memory transport."""

from __future__ import annotations

import pytest

import posthouse
from sdk.sdk_support import Tenant

EMAIL = posthouse.Email(sender="app@example.com", to="user@example.com", subject="Welcome", text_body="Hi")


@pytest.mark.parametrize(
    ("url", "kind", "attributes"),
    [
        (
            "posthouse+https://tok@mail.example.com",
            posthouse.APITransport,
            {"_token": "tok", "_base_url": "https://mail.example.com"},
        ),
        (
            "posthouse+http://tok@127.0.0.1:8080",
            posthouse.APITransport,
            {"_token": "tok", "_base_url": "http://127.0.0.1:8080"},
        ),
        (
            "posthouse+https://tok@[::1]:8443/prefix/",
            posthouse.APITransport,
            {"_base_url": "https://[::1]:8443/prefix"},
        ),
        (
            "smtp+starttls://user:pass@smtp.example.com:587",
            posthouse.SMTPTransport,
            {"security": "starttls", "host": "smtp.example.com", "port": 587, "username": "user"},
        ),
        ("smtp+starttls://smtp.example.com", posthouse.SMTPTransport, {"port": 587, "username": None}),
        (
            "smtps://u%40x:p@smtp.example.com",
            posthouse.SMTPTransport,
            {"security": "tls", "port": 465, "username": "u@x"},
        ),
        (
            "smtp://localhost:2525?timeout=5",
            posthouse.SMTPTransport,
            {"security": "none", "port": 2525, "timeout": 5.0},
        ),
        ("smtp://localhost", posthouse.SMTPTransport, {"port": 25, "timeout": 30.0}),
        ("memory://", posthouse.MemoryTransport, {"outbox": []}),
    ],
)
def test_transport_from_url(url: str, kind: type, attributes: dict[str, object]) -> None:
    transport = posthouse.transport_from_url(url)
    assert type(transport) is kind
    assert isinstance(transport, posthouse.Transport)
    for name, value in attributes.items():
        assert getattr(transport, name) == value


@pytest.mark.parametrize(
    "url",
    [
        "https://mail.example.com",
        "posthouse+https://mail.example.com",  # no token
        "posthouse+ftp://tok@mail.example.com",
        "smtp+ssl://host",
        "smtp://",
        "smtp://host:notaport",
        "",
    ],
)
def test_urls_that_name_no_transport(url: str) -> None:
    with pytest.raises(posthouse.ConfigurationError):
        posthouse.transport_from_url(url)


def test_a_password_never_shows_in_errors() -> None:
    with pytest.raises(posthouse.ConfigurationError) as bad:
        posthouse.SMTPTransport("smtp://user:s3cret@host:port")
    assert "s3cret" not in str(bad.value)


async def test_the_memory_transport_keeps_what_it_is_given() -> None:
    transport = posthouse.transport_from_url("memory://")
    assert isinstance(transport, posthouse.MemoryTransport)
    first = transport.send(EMAIL)
    second = await transport.send_async(posthouse.Email(sender="app@example.com", to="b@example.com", subject="2nd"))
    assert [e.subject for e in transport.outbox] == ["Welcome", "2nd"]
    assert transport.outbox[0] is EMAIL
    assert first.error_code == 0 and first.to == "user@example.com" and len(first.message_id) == 36
    assert first.message_id != second.message_id
    transport.clear()
    assert transport.outbox == []
    transport.close()
    await transport.aclose()


async def test_the_api_transport_sends_both_ways(tenant: Tenant) -> None:
    host_port = tenant.base_url.removeprefix("http://")
    transport = posthouse.transport_from_url(f"posthouse+http://{tenant.token}@{host_port}")
    try:
        sync_sent = transport.send(EMAIL)
        async_sent = await transport.send_async(
            posthouse.Email(sender="app@example.com", to="user@example.com", subject="Async", text_body="Hi")
        )
    finally:
        transport.close()
        await transport.aclose()
    assert tenant.get(f"/messages/outbound/{sync_sent.message_id}/details")["Subject"] == "Welcome"
    assert tenant.get(f"/messages/outbound/{async_sent.message_id}/details")["Subject"] == "Async"


def test_the_api_transport_checks_its_settings_at_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("POSTHOUSE_BASE_URL", raising=False)
    with pytest.raises(posthouse.ConfigurationError, match="base URL"):
        posthouse.APITransport("token")


def an_application_that_sends_welcome_mail(transport: posthouse.Transport, address: str) -> None:
    transport.send(posthouse.Email(sender="app@example.com", to=address, subject="Welcome", text_body="Hi"))


def test_an_application_tests_its_mail_with_the_memory_transport() -> None:
    transport = posthouse.MemoryTransport()
    an_application_that_sends_welcome_mail(transport, "new@example.com")
    [sent] = transport.outbox
    assert (sent.to, sent.subject) == ("new@example.com", "Welcome")
