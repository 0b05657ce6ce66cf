"""Tracked mail through a real `posthouse serve` relaying to a recording sink, on SQLite and PostgreSQL: each
recipient's copy carries tokens naming their own delivery (checked with the installation's key from the
store), the quoted-printable parts still parse with the stdlib, and every link resolves to the URL the sender
wrote through `message_links`; the same for mail submitted over SMTP with X-PM-TrackLinks/X-PM-TrackOpens."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import Iterator, Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest

from e2e.relay_tenants import Tenant, new_tenant
from integration.smtp_peers import ReceivedMessage, RecordingSink
from posthouse.server.domain.tracking import PLACEHOLDER, TrackingToken, decode_token
from posthouse.server.store import open_store_for
from support import ServerProcess, create_postgres_database, drop_postgres_database, require_postgres, wait_for

BASE = "https://track.shop.example"  # tracking_base_url: the public name of the tracking listener
LINKS = [f"https://shop.example/item/{i}?ref=mail&n={i}" for i in range(12)]
HTML = ("<!DOCTYPE html><html><head><style>p { margin: 0 }</style></head><body><p>Bonjour Zoë — here is your "
        "order, with every item:</p>"
        + "".join(f'<p><a href="{url.replace("&", "&amp;")}" style="color:#0a0">Item {i}: {"é" * 30}</a></p>'
                  for i, url in enumerate(LINKS))
        + '<p><a href="mailto:help@shop.example">help</a></p></body></html>')
TEXT = "Bonjour Zoë,\n" + "\n".join(f"Item {i}: {url}" for i, url in enumerate(LINKS)) + "\n"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def verp_off_relay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[tuple[ServerProcess, RecordingSink]]:
    """`posthouse serve` relaying to a sink with VERP off, so one SMTP transaction per message is the rule and
    only tracking makes it one per recipient."""
    folder = tmp_path_factory.mktemp(f"tracking-{request.param}")
    base = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'posthouse.db'}"
    else:
        base = require_postgres()
        url = asyncio.run(create_postgres_database(base))
    try:
        with RecordingSink() as sink:
            server = ServerProcess(folder / "data", url, delivery="relay", relay_url=f"smtp://127.0.0.1:{sink.port}",
                                   env={"POSTHOUSE_RETURN_PATH": "off", "POSTHOUSE_POLL_INTERVAL": "200ms",
                                        "POSTHOUSE_TRACKING_BASE_URL": BASE})
            with server:
                yield server, sink
    finally:
        if base is not None:
            asyncio.run(drop_postgres_database(base, url))


@pytest.fixture
def tenant(verp_off_relay: tuple[ServerProcess, RecordingSink]) -> Tenant:
    return new_tenant(*verp_off_relay)


def query(database_url: str, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]:
    """A read of the server's own database (the installation key, its queue rows, its links)."""

    async def run() -> list[Sequence[Any]]:
        store = open_store_for(database_url)
        await store.open()
        try:
            return await store.query(sql, args)
        finally:
            await store.close()

    return asyncio.run(run())


def tokens_in(text: str) -> list[tuple[str, str]]:
    return re.findall(rf"{re.escape(BASE)}/([oc])/([A-Za-z0-9_-]{{28}})", text)


def check_copies(tenant: Tenant, message_id: str, copies: list[ReceivedMessage], recipients: list[str],
                 html_links: list[str], text_links: list[str]) -> None:
    """Each copy went to one recipient; its tokens name that recipient's delivery, its links resolve to the
    sender's URLs in the body they were in, and its pixel is there."""
    url = tenant.process.database_url
    key = bytes.fromhex(query(url, "SELECT value FROM secrets WHERE name = 'tracking-key'")[0][0])
    deliveries = {str(r[1]): int(r[0]) for r in query(
        url, "SELECT id, recipient FROM deliveries WHERE message_id = ?", (message_id,))}
    stored = {int(r[0]): (str(r[1]), str(r[2])) for r in query(
        url, "SELECT link, url, location FROM message_links WHERE message_id = ?", (message_id,))}
    assert sorted(r for c in copies for r in c.rcpt_tos) == sorted(recipients)
    seen_deliveries = set()
    for copy in copies:
        [recipient] = copy.rcpt_tos
        assert not PLACEHOLDER.search(copy.data)
        assert max(map(len, copy.data.split(b"\r\n"))) <= 998
        parsed = BytesParser(policy=policy.default).parsebytes(copy.data)
        html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "X-PM-Track" not in str(parsed)
        for body, location, expected in ((html, "HTML", html_links), (text, "Text", text_links)):
            found = [(kind, decode_token(key, token)) for kind, token in tokens_in(body)]
            assert all(token is not None and token.delivery_id == deliveries[recipient] for _, token in found)
            clicks = [token for kind, token in found if kind == "c" and token is not None]
            assert [stored[t.link] for t in clicks] == [(u, location) for u in expected]
            opens = [token for kind, token in found if kind == "o"]
            assert opens == ([TrackingToken(deliveries[recipient], 0)] if location == "HTML" else [])
        seen_deliveries.add(deliveries[recipient])
    assert len(seen_deliveries) == len(recipients)


def test_each_recipient_of_an_api_send_gets_their_own_tokens(tenant: Tenant) -> None:
    recipients = [tenant.address(name) for name in ("ann", "bob", "cy")]
    with tenant.client() as client:
        response = client.post("/email", json={
            "From": "orders@shop.example", "To": ", ".join(recipients[:2]), "Cc": recipients[2],
            "Subject": "Your order", "HtmlBody": HTML, "TextBody": TEXT, "TrackOpens": True,
            "TrackLinks": "HtmlAndText"})
    assert response.status_code == 200, response.text
    message_id = response.json()["MessageID"]
    copies = wait_for(lambda: len(tenant.arrived()) >= 3 and tenant.arrived(), timeout=30)
    assert len(copies) == 3
    assert all(b"Content-Transfer-Encoding: quoted-printable" in c.data for c in copies)
    check_copies(tenant, message_id, copies, recipients, LINKS, LINKS)
    # Without tracking, the same message goes to all three in one transaction, as sent.
    with tenant.client() as client:
        plain = client.post("/email", json={"From": "orders@shop.example", "To": ", ".join(recipients),
                                            "Subject": "Untracked", "HtmlBody": HTML, "TextBody": TEXT})
    assert plain.status_code == 200, plain.text
    [untracked] = wait_for(lambda: [m for m in tenant.arrived() if b"Subject: Untracked" in m.data], timeout=30)
    assert sorted(untracked.rcpt_tos) == sorted(recipients) and b"phtrk" not in untracked.data
    # The message's details show it as written: no pixel, the sender's links.
    shown = tenant.get(f"/messages/outbound/{message_id}/details")
    assert (shown["HtmlBody"], shown["TextBody"]) == (HTML, TEXT)
    assert "phtrk" not in tenant.get(f"/messages/outbound/{message_id}/dump")["Body"]


def test_an_smtp_submission_with_x_pm_tracking_headers_is_tracked(tenant: Tenant) -> None:
    recipients = [tenant.address("dee"), tenant.address("eve")]
    message = EmailMessage()
    message["From"] = "orders@shop.example"
    message["To"] = ", ".join(recipients)
    message["Subject"] = "Submitted and tracked"
    message["X-PM-TrackOpens"] = "true"
    message["X-PM-TrackLinks"] = "HtmlOnly"
    message.set_content(TEXT, cte="base64")
    message.add_alternative(HTML, subtype="html", cte="quoted-printable")
    message.add_attachment(b"%PDF-1.4 https://shop.example/attached", maintype="application", subtype="pdf",
                           filename="invoice.pdf")
    with smtplib.SMTP("127.0.0.1", tenant.process.smtp_port, timeout=10) as client:
        client.login(tenant.token, tenant.token)  # loopback may AUTH without TLS by default
        assert client.send_message(message) == {}
    copies = wait_for(lambda: len(tenant.arrived()) >= 2 and tenant.arrived(), timeout=30)
    assert len(copies) == 2
    row = query(tenant.process.database_url, "SELECT message_id FROM messages WHERE subject = ? AND server_id = ?",
                ("Submitted and tracked", tenant.server_id))
    message_id = str(row[0][0])
    check_copies(tenant, message_id, copies, recipients, LINKS, [])
    for copy in copies:
        parsed = BytesParser(policy=policy.default).parsebytes(copy.data)
        assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == TEXT  # type: ignore[union-attr]
        [attachment] = list(parsed.iter_attachments())
        assert attachment.get_content() == b"%PDF-1.4 https://shop.example/attached"
    shown = tenant.get(f"/messages/outbound/{message_id}/details")
    assert shown["HtmlBody"].replace("\r\n", "\n") == HTML + "\n"
    assert (shown["TrackOpens"], shown["TrackLinks"]) == (True, "HtmlOnly")
