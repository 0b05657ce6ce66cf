"""A bounce and inbound mail in one SMTP transaction (a DSN whose recipients are a VERP return path and a server's
inbound address) are stored in one store transaction: when storing fails, neither is stored and the sender's
retry records the bounce once (docs/architecture.md §5a). The failure is a real database error inside that
transaction, injected by a subclass of the real store; the sender is smtplib on loopback; both databases."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.smtp.server import Listener
from posthouse.server.store import open_store_for
from posthouse.server.store.base import Stmt, Store
from posthouse.server.store.sql import Then


def failing_store(url: str) -> Any:
    """The real store for `url`, whose next write that stores inbound mail fails inside its transaction (a
    NOT NULL violation after every other statement ran): the database rolls the whole transaction back."""
    base: type[Any] = type(open_store_for(url))

    class FailingOnce(base):  # type: ignore[misc]
        fail_next = False

        async def transact(self, stmts: Sequence[Stmt | Then]) -> list[list[Sequence[Any]]]:
            if self.fail_next and any(isinstance(s, Stmt) and s.sql.startswith("INSERT INTO inbound_messages")
                                      for s in stmts):
                self.fail_next = False
                stmts = [*stmts, Stmt("INSERT INTO inbound_rules (server_id, rule, created_at) VALUES (NULL, 'x', 0)")]
            return await super().transact(stmts)  # type: ignore[no-any-return]

    return FailingOnce.from_url(url) if url.startswith("sqlite:") else FailingOnce(url)


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    store: Store = failing_store(database_url)
    await store.open()
    await store.migrate()
    settings = load_settings({"delivery": "sandbox", "data_dir": str(tmp_path / "data"), "inbound_spf": "false",
                              "smtp_hostname": "mx.posthouse.test", "return_path": "pm_bounces@bounces.posthouse.test"},
                             environ={})
    made = Runtime(settings, store)
    try:
        yield made
    finally:
        await made.stop()
        await store.close()


def dsn(original_recipient: str) -> bytes:
    """A delivery status notification (RFC 3464) saying the recipient does not exist."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: inbound copy\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.example.net>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {original_recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--B--\r\n").encode()


async def test_a_failed_store_records_nothing_and_the_retry_records_the_bounce_once(runtime: Runtime) -> None:
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://api.test") as api:
        headers = {"X-Postmark-Server-Token": tokens[0], "Accept": "application/json"}
        sent = await api.post("/email", headers=headers, json={
            "From": "app@example.com", "To": "gone@example.net", "Subject": "Receipt", "TextBody": "Thanks"})
        assert sent.status_code == 200, sent.text
        inbound_address = (await api.get("/server", headers=headers)).json()["InboundAddress"]
    store = runtime.store
    row = await store.query_one("SELECT id FROM deliveries WHERE message_id = ?", (sent.json()["MessageID"],))
    assert row is not None and runtime.return_paths is not None
    return_path = await runtime.return_paths.address_for(int(row[0]), "app@example.com")
    server = runtime.inbound_smtp_server()
    ((_, port),) = await server.start([Listener("127.0.0.1", 0)])

    def send() -> tuple[int, str]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            try:
                client.sendmail("<>", [return_path, inbound_address], dsn("gone@example.net"))
            except smtplib.SMTPDataError as exc:
                error = exc.smtp_error
                return exc.smtp_code, error.decode() if isinstance(error, bytes) else error
            return 250, ""

    async def count(table: str) -> int:
        found = await store.query_one(f"SELECT count(*) FROM {table}")
        assert found is not None
        return int(found[0])

    try:
        store.fail_next = True  # type: ignore[attr-defined]
        code, text = await asyncio.to_thread(send)
        assert code == 451 and "4.3.0" in text  # the sender keeps the message and tries again
        assert (await count("bounces"), await count("inbound_messages"), await count("events")) == (0, 0, 1)
        assert await count("suppressions") == 0 and await count("inbound_contents") == 0

        assert await asyncio.to_thread(send) == (250, "")  # the retry
        assert await count("bounces") == 1 and await count("inbound_messages") == 1
        bounce = await store.query_one("SELECT email, type FROM bounces")
        assert bounce is not None and (bounce[0], bounce[1]) == ("gone@example.net", "HardBounce")
        assert await count("suppressions") == 1  # the hard bounce's, once
        events = await store.query("SELECT type FROM events ORDER BY id")
        assert [e[0] for e in events] == ["Queued", "Bounced", "SubscriptionChanged"]  # each once
    finally:
        await server.stop(grace=1.0)
