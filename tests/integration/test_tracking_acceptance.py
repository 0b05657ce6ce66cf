"""Tracking through the real API on SQLite and PostgreSQL: what is tracked for each way of sending, the links
stored with the message, details and dump showing the message as written, and the worker sending each
recipient of a tracked message their own copy."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import httpx
import pytest

from posthouse.server.config import load_settings
from posthouse.server.delivery.base import AttemptResult, Envelope
from posthouse.server.delivery.smtp_client import Reply
from posthouse.server.domain.tracking import PLACEHOLDER, TrackingToken, decode_token, placeholder
from posthouse.server.runtime import Runtime
from posthouse.server.smtp.server import Listener
from posthouse.server.store.base import Store
from support import async_wait_for

BASE = "http://127.0.0.1:8081"  # the default: tracking_base_url empty, the tracking listener's own address
HTML = ('<html><body><p>Hi, <a href="https://example.com/order?id=7&amp;ref=mail">your order</a>, '
        '<a href="mailto:help@example.com">help</a>, '
        '<a data-pm-no-track href="https://example.com/unsubscribe">unsubscribe</a></p></body></html>')
TEXT = "Your order: https://example.com/order?id=7&ref=mail\nUnsubscribe: https://example.com/unsubscribe\n"
ORDER = "https://example.com/order?id=7&ref=mail"


def email(**fields: Any) -> dict[str, Any]:
    return {"From": "shop@example.com", "To": "ann@example.com", "Subject": "Your order", "HtmlBody": HTML,
            "TextBody": TEXT, **fields}


async def send(api, **fields: Any) -> str:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email", json=email(**fields), headers=api.server_headers)
    assert response.status_code == 200, response.text
    return str(response.json()["MessageID"])


def body(data: bytes, subtype: str) -> str:
    """A body of MIME bytes as the stdlib reads it, with "\n" line ends."""
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


async def links(store: Store, message_id: str) -> list[tuple[Any, ...]]:
    rows = await store.query("SELECT link, url, location, written FROM message_links WHERE message_id = ? "
                             "ORDER BY link", (message_id,))
    return [tuple(r) for r in rows]


async def stored(store: Store, message_id: str) -> bytes:
    record = await store.get_message(1, message_id, with_content=True)
    assert record is not None and record.content is not None
    return record.content


async def details(api, message_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await api.client.get(f"/messages/outbound/{message_id}/details", headers=api.server_headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_tracked_send_stores_its_links_and_placeholders(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, TrackOpens=True, TrackLinks="HtmlAndText")
    assert await links(api.runtime.store, message_id) == [
        (1, ORDER, "HTML", "https://example.com/order?id=7&amp;ref=mail"), (2, ORDER, "Text", None)]
    content = await stored(api.runtime.store, message_id)
    html, text = body(content, "html"), body(content, "plain")
    assert f'<a href="{BASE}/c/{placeholder(1)}">your order</a>' in html
    assert f'<img src="{BASE}/o/{placeholder(0)}"' in html and html.index("<img") < html.index("</body>")
    assert 'href="https://example.com/unsubscribe"' in html and 'href="mailto:help@example.com"' in html
    # The unsubscribe link is opted out in the HTML, and so in the text (Postmark's documented rule).
    assert text == TEXT.replace(ORDER, f"{BASE}/c/{placeholder(2)}")


async def test_details_and_dump_show_the_message_as_written(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, TrackOpens=True, TrackLinks="HtmlAndText")
    shown = await details(api, message_id)
    assert (shown["HtmlBody"], shown["TextBody"]) == (HTML, TEXT)
    assert (shown["TrackOpens"], shown["TrackLinks"]) == (True, "HtmlAndText")
    assert "phtrk" not in shown["Body"] and "/o/" not in shown["Body"]
    dump = (await api.client.get(f"/messages/outbound/{message_id}/dump", headers=api.server_headers)).json()
    assert dump["Body"] == shown["Body"]
    assert (body(dump["Body"].encode(), "html"), body(dump["Body"].encode(), "plain")) == (HTML, TEXT)
    # The same message sent untracked has the same dump.
    plain_id = await send(api)
    plain = (await api.client.get(f"/messages/outbound/{plain_id}/dump", headers=api.server_headers)).json()
    # Ids, boundaries and the Date header (the two sends may fall in different seconds) differ by design.
    normalise = re.compile(r"(Message-ID: <|X-PM-Message-Id: |Date: )[^\r\n]+|boundary=\"[^\"]+\"|=_[a-z][0-9a-f]{32}")
    assert normalise.sub("", plain["Body"]) == normalise.sub("", dump["Body"])


async def test_untracked_mail_is_stored_as_built(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, TrackOpens=False, TrackLinks="None")
    assert await links(api.runtime.store, message_id) == []
    content = await stored(api.runtime.store, message_id)
    assert b"phtrk" not in content and ORDER.encode() in content
    shown = await details(api, message_id)
    assert (shown["TrackOpens"], shown["TrackLinks"]) == (False, "None")


async def test_the_servers_settings_are_the_default_and_its_open_tracking_wins(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.put("/server", json={"TrackOpens": True, "TrackLinks": "HtmlOnly"},
                                    headers=api.server_headers)
    assert response.status_code == 200, response.text
    defaults = await send(api)
    assert [link[2] for link in await links(api.runtime.store, defaults)] == ["HTML"]
    assert placeholder(0).encode() in await stored(api.runtime.store, defaults)
    refusing = await send(api, TrackOpens=False, TrackLinks="None")
    assert await links(api.runtime.store, refusing) == []
    assert placeholder(0).encode() in await stored(api.runtime.store, refusing)  # the server's true wins
    assert (await details(api, refusing))["TrackOpens"] is True
    text_only = await send(api, TrackLinks="TextOnly")
    assert [link[2] for link in await links(api.runtime.store, text_only)] == ["Text"]


async def test_batch_items_are_tracked_each_as_asked(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email/batch", headers=api.server_headers, json=[
        email(TrackLinks="HtmlOnly"), email(), email(TrackOpens=True, HtmlBody=None)])
    assert response.status_code == 200, response.text
    first, second, third = (item["MessageID"] for item in response.json())
    assert [link[2] for link in await links(api.runtime.store, first)] == ["HTML"]
    assert await links(api.runtime.store, second) == []
    assert b"phtrk" not in await stored(api.runtime.store, second)
    # Open tracking needs an HTML part: a text-only message gets no pixel.
    assert b"phtrk" not in await stored(api.runtime.store, third)


async def test_a_template_is_tracked_after_rendering_and_inlining(api) -> None:  # type: ignore[no-untyped-def]
    template = {"Name": "Receipt", "Alias": "receipt", "Subject": "Receipt {{id}}",
                "HtmlBody": '<html><head><style>a { color: red; }</style></head><body>'
                            '<a href="https://example.com/r/{{id}}?u={{user}}">receipt</a> '
                            '<a href="{{{ pm:unsubscribe }}}">stop</a></body></html>',
                "TextBody": "Receipt: https://example.com/r/{{id}}"}
    created = await api.client.post("/templates", json=template, headers=api.server_headers)
    assert created.status_code == 200, created.text
    response = await api.client.post("/email/withTemplate", headers=api.server_headers, json={
        "From": "shop@example.com", "To": "ann@example.com", "TemplateAlias": "receipt",
        "TemplateModel": {"id": 42, "user": "a&b"}, "TrackLinks": "HtmlAndText", "TrackOpens": True})
    assert response.status_code == 200, response.text
    message_id = response.json()["MessageID"]
    assert [(link[1], link[2]) for link in await links(api.runtime.store, message_id)] == [
        ("https://example.com/r/42?u=a&b", "HTML"), ("https://example.com/r/42", "Text")]
    shown = await details(api, message_id)
    assert 'style="color: red;"' in shown["HtmlBody"] and "phtrk" not in shown["HtmlBody"]
    assert 'href="https://example.com/r/42?u=a&amp;b"' in shown["HtmlBody"]


async def test_bulk_messages_are_tracked(api) -> None:  # type: ignore[no-untyped-def]
    answer = await api.client.post("/email/bulk", headers=api.server_headers, json={
        "From": "news@example.com", "Subject": "News", "HtmlBody": '<a href="https://example.com/{{n}}">read</a>',
        "TrackLinks": "HtmlOnly", "TrackOpens": True,
        "Messages": [{"To": f"u{i}@example.com", "TemplateModel": {"n": i}} for i in range(3)]})
    assert answer.status_code == 200, answer.text
    store, bulk = api.runtime.store, api.runtime.bulk
    while (record := await store.claim_bulk("test", 10**18, 10**18 + 1)) is not None:
        await bulk.expand(record)
    rows = await store.query("SELECT l.url FROM message_links l JOIN messages m ON m.message_id = l.message_id "
                             "WHERE m.from_email = 'news@example.com' ORDER BY l.url")
    assert [r[0] for r in rows] == [f"https://example.com/{i}" for i in range(3)]


async def test_the_test_token_accepts_tracking_fields_and_stores_nothing(api) -> None:  # type: ignore[no-untyped-def]
    headers = {**api.server_headers, "X-Postmark-Server-Token": "POSTMARK_API_TEST"}
    response = await api.client.post("/email", json=email(TrackOpens=True, TrackLinks="HtmlAndText"),
                                     headers=headers)
    assert response.status_code == 200 and response.json()["ErrorCode"] == 0
    assert await api.count("message_links") == 0


async def test_a_message_with_its_own_placeholder_text_is_sent_untracked(api) -> None:  # type: ignore[no-untyped-def]
    odd = f"<p>{placeholder(1)} <a href='https://example.com/'>x</a></p>"
    message_id = await send(api, HtmlBody=odd, TextBody=None, TrackLinks="HtmlOnly", TrackOpens=True)
    assert await links(api.runtime.store, message_id) == []
    assert (await details(api, message_id))["HtmlBody"] == odd


async def test_an_invalid_tracklinks_value_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email", json=email(TrackLinks="Sometimes"), headers=api.server_headers)
    assert response.status_code == 422 and response.json()["ErrorCode"] == 300


# -- SMTP submission ---------------------------------------------------------------------------------------------


@pytest.fixture
async def smtp(store: Store, tmp_path) -> AsyncIterator[tuple[Runtime, int, str]]:  # type: ignore[no-untyped-def]
    settings = load_settings({"data_dir": str(tmp_path), "delivery": "sandbox",
                              "tracking_base_url": "https://click.example.org/t/"}, environ={})
    runtime = Runtime(settings, store)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    server = runtime.smtp_server()
    ((_, port),) = await server.start([Listener("127.0.0.1", 0)])
    try:
        yield runtime, port, tokens[0]
    finally:
        await server.stop(grace=2)
        await runtime.stop()


SUBMITTED = (
    "From: shop@example.com\r\nTo: ann@example.com\r\nSubject: smtp\r\nX-PM-TrackOpens: true\r\n"
    "X-PM-TrackLinks: HtmlAndText\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
    "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "U2VlIGh0dHBzOi8vZXhhbXBsZS5jb20vc210cD9hPTEmYj0y\r\n"
    "--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    '<body><a href=3D"https://example.com/smtp?a=3D1&amp;b=3D2">see</a></body>\r\n'
    "--b1--\r\n")


async def test_smtp_submissions_are_tracked_by_their_headers(smtp) -> None:  # type: ignore[no-untyped-def]
    runtime, port, token = smtp

    def submit() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.login(token, token)  # loopback may AUTH without TLS by default
            return client.sendmail("shop@example.com", ["ann@example.com"], SUBMITTED.encode())

    assert await asyncio.to_thread(submit) == {}
    row = await runtime.store.query_one("SELECT message_id FROM messages WHERE subject = 'smtp'")
    assert row is not None
    message_id = row[0]
    assert await links(runtime.store, message_id) == [
        (1, "https://example.com/smtp?a=1&b=2", "HTML", "https://example.com/smtp?a=1&amp;b=2"),
        (2, "https://example.com/smtp?a=1&b=2", "Text", None)]
    content = await stored(runtime.store, message_id)
    assert b"X-PM-Track" not in content
    assert body(content, "plain") == f"See https://click.example.org/t/c/{placeholder(2)}"
    assert b"Content-Transfer-Encoding: quoted-printable\r\n\r\nSee https://click.example.org/t/c/" in content
    assert f'href="https://click.example.org/t/c/{placeholder(1)}"' in body(content, "html")
    record = await runtime.history.details(1, message_id)
    assert record.html_body is not None and record.text_body is not None
    assert record.html_body.strip() == '<body><a href="https://example.com/smtp?a=1&amp;b=2">see</a></body>'
    assert record.text_body == "See https://example.com/smtp?a=1&b=2"


# -- delivery: one copy per recipient ----------------------------------------------------------------------------


class CapturingTransport:
    """Accepts every recipient and keeps each envelope (a fake next hop, injected through the Runtime)."""

    name = "capture"

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def send(self, envelope: Envelope) -> AttemptResult:
        self.envelopes.append(envelope)
        return AttemptResult({r: Reply(250, "2.0.0 Ok", "2.0.0") for r in envelope.recipients}, "capture", "127.0.0.1")

    async def close(self) -> None:
        return None


async def test_each_recipient_of_a_tracked_message_gets_their_own_tokens(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({"data_dir": str(tmp_path), "delivery": "relay", "relay_url": "smtp://127.0.0.1:9",
                              "return_path": "off", "poll_interval": "50ms"}, environ={})
    transport = CapturingTransport()
    runtime = Runtime(settings, store, transport=transport)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    recipients = ["ann@example.com", "bob@example.com", "cy@example.com"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://t") as client:
        headers = {"X-Postmark-Server-Token": tokens[0], "Accept": "application/json"}
        tracked = await client.post("/email", headers=headers, json=email(
            To=", ".join(recipients), TrackOpens=True, TrackLinks="HtmlAndText"))
        untracked = await client.post("/email", headers=headers, json=email(To=", ".join(recipients)))
        assert tracked.status_code == untracked.status_code == 200
    await runtime.start_worker()

    async def all_sent() -> bool:
        return len(transport.envelopes) >= 4

    try:
        await async_wait_for(all_sent, timeout=20)
    finally:
        await runtime.stop()
    assert len(transport.envelopes) == 4  # three tracked copies, one untracked transaction for all
    plain = [e for e in transport.envelopes if len(e.recipients) == 3]
    assert len(plain) == 1 and b"phtrk" not in plain[0].data and ORDER.encode() in plain[0].data
    secret = await store.query_one("SELECT value FROM secrets WHERE name = 'tracking-key'")
    assert secret is not None
    key = bytes.fromhex(secret[0])
    deliveries = {r[1]: int(r[0]) for r in await store.query(
        "SELECT id, recipient FROM deliveries WHERE message_id = ?", (tracked.json()["MessageID"],))}
    stored_links = {link[0]: link[1] for link in await links(store, tracked.json()["MessageID"])}
    copies = [e for e in transport.envelopes if len(e.recipients) == 1]
    assert sorted(e.recipients[0] for e in copies) == recipients
    for copy in copies:
        assert not PLACEHOLDER.search(copy.data)
        found = [decode_token(key, t.decode()) for t in re.findall(rb"/[oc]/([A-Za-z0-9_-]{28})", copy.data)]
        # The text part's link (2), then the HTML's link (1) and pixel (0), all naming this recipient's delivery.
        assert found == [TrackingToken(deliveries[copy.recipients[0]], n) for n in (2, 1, 0)]
        assert [stored_links[t.link] for t in found if t is not None and t.link] == [ORDER, ORDER]
