"""A whole runtime for the retention and data removal tests: the real API over ASGI, the real worker (sandbox
delivery, webhook posts to a receiver on loopback, tracking recorder) and a clock the test moves."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.services.clock import Clock, to_micros
from posthouse.server.store.base import Store
from support import WEBHOOKS_TO_LOOPBACK, async_wait_for
from tracking_helpers import APPLE_MAIL, LINKS, track
from webhook_receiver import WebhookReceiver

T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


class MovableClock(Clock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def micros(self) -> int:
        return to_micros(self.moment)

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


class Operated:
    def __init__(self, runtime: Runtime, api: httpx.AsyncClient, tracker: httpx.AsyncClient, clock: MovableClock,
                 server_token: str, account_token: str, receiver: WebhookReceiver) -> None:
        self.runtime = runtime
        self.api = api
        self.tracker = tracker
        self.clock = clock
        self.server_token = server_token
        self.account_token = account_token
        self.receiver = receiver
        self.inbound_port: int | None = None
        self._inbound_server: Any = None

    @property
    def store(self) -> Store:
        return self.runtime.store

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"X-Postmark-Server-Token": token or self.server_token, "Accept": "application/json"}

    @property
    def account_headers(self) -> dict[str, str]:
        return {"X-Postmark-Account-Token": self.account_token, "Accept": "application/json"}

    async def create_server(self, name: str, **fields: Any) -> tuple[int, str]:
        answer = await self.api.post("/servers", headers=self.account_headers, json={"Name": name, **fields})
        assert answer.status_code == 200, answer.text
        return int(answer.json()["ID"]), str(answer.json()["ApiTokens"][0])

    async def webhook(self, token: str | None = None) -> int:
        answer = await self.api.post("/webhooks", headers=self.headers(token), json={
            "Url": self.receiver.url, "Triggers": {"Delivery": {"Enabled": True}, "Bounce": {"Enabled": True},
                                                  "Open": {"Enabled": True}}})
        assert answer.status_code == 200, answer.text
        return int(answer.json()["ID"])

    async def send(self, token: str | None = None, **fields: Any) -> str:
        message = {"From": "app@example.com", "To": "ann@example.com", "Subject": "Your receipt",
                   "HtmlBody": "<p>Thanks</p>", "TextBody": "Thanks", "Tag": "receipt",
                   "Metadata": {"order": "17"}, **fields}
        answer = await self.api.post("/email", headers=self.headers(token), json=message)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["MessageID"])

    async def settle(self) -> None:
        """Wait until every due recipient is delivered and every due webhook post answered."""
        now = self.clock.micros()

        async def quiet() -> bool:
            busy = await self.store.query_one(
                # A leased row's next_attempt_at is its lease's end: 'sending' counts whenever it is due.
                "SELECT (SELECT count(*) FROM deliveries WHERE state = 'sending' OR (state IN ('queued', 'deferred') "
                "AND next_attempt_at <= ?)) + (SELECT count(*) FROM webhook_posts WHERE state = 'sending' OR "
                "(state = 'pending' AND next_attempt_at <= ?))", (now, now))
            return busy is not None and int(busy[0]) == 0

        self.runtime.wakeup.notify()
        self.runtime.webhook_wakeup.notify()
        await async_wait_for(quiet, timeout=30)

    async def open_pixel(self, message_id: str, recipient: str) -> None:
        """The recipient opens the message (its links stored as the worker stores them, the pixel fetched)."""
        tracked = await track(self.store, message_id, LINKS)
        before = await self.count("tracking_hits")
        answer = await self.tracker.get(f"/o/{tracked.pixel(recipient)}", headers={"User-Agent": APPLE_MAIL})
        assert answer.status_code == 200

        async def recorded() -> bool:
            return await self.count("tracking_hits") > before

        await async_wait_for(recorded)

    async def count(self, table: str, where: str = "", args: tuple[Any, ...] = ()) -> int:
        row = await self.store.query_one(f"SELECT count(*) FROM {table} {where}", args)
        assert row is not None
        return int(row[0])

    async def rows_naming(self, message_ids: list[str]) -> dict[str, int]:
        """How many rows of each table hang off these messages."""
        marks = ", ".join("?" * len(message_ids))
        tables = {
            "messages": "message_id", "deliveries": "message_id", "events": "message_id",
            "message_metadata": "message_id", "message_links": "message_id", "tracking_hits": "message_id",
            "bounces": "message_id",
        }
        found = {t: await self.count(t, f"WHERE {c} IN ({marks})", tuple(message_ids)) for t, c in tables.items()}
        found["engagements"] = await self.count(
            "engagements", f"WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_id IN ({marks}))",
            tuple(message_ids))
        if self.store.dialect == "sqlite":
            found["message_subjects"] = await self.count("message_subjects", f"WHERE message_id IN ({marks})",
                                                         tuple(message_ids))
        return found

    async def posts_naming(self, text: str) -> int:
        rows = await self.store.query("SELECT payload FROM webhook_posts")
        return sum(1 for r in rows if text in str(r[0]).lower())

    async def stats(self) -> dict[tuple[Any, ...], int]:
        rows = await self.store.query("SELECT server_id, day, stream, tag, metric, value FROM stats_daily")
        return {tuple(r[:5]): int(r[5]) for r in rows}

    async def inbound_address(self, token: str | None = None) -> str:
        answer = await self.api.get("/server", headers=self.headers(token))
        return str(answer.json()["InboundAddress"])

    async def receive(self, mail_from: str, recipients: list[str], *, sender: str = "", to: str = "",
                      cc: str = "", subject: str = "Hello") -> None:
        """A message handed to the inbound (MX) listener by smtplib on loopback, as an MTA would: 250 expected.
        The listener is started on first use (`inbound_port`)."""
        if self.inbound_port is None:
            from posthouse.server.smtp.server import Listener

            self._inbound_server = self.runtime.inbound_smtp_server()
            ((_, self.inbound_port),) = await self._inbound_server.start([Listener("127.0.0.1", 0)])
        headers = f"From: {sender or mail_from}\r\nTo: {to or ', '.join(recipients)}\r\n"
        headers += f"Cc: {cc}\r\n" if cc else ""
        data = (f"{headers}Subject: {subject}\r\nMessage-ID: <{uuid.uuid4()}@sender.example>\r\n"
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHi.\r\n").encode()
        port = self.inbound_port

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                refused = client.sendmail(mail_from, recipients, data)
                assert not refused, refused

        await asyncio.to_thread(send)

    async def stop_inbound(self) -> None:
        if self._inbound_server is not None:
            await self._inbound_server.stop(grace=1.0)

    async def details(self, message_id: str, token: str | None = None) -> httpx.Response:
        return await self.api.get(f"/messages/outbound/{message_id}/details", headers=self.headers(token))


async def operated(store: Store, data_dir: Path, **settings: Any) -> AsyncIterator[Operated]:
    clock = MovableClock(T0)
    with WebhookReceiver() as receiver:
        runtime = Runtime(load_settings({"delivery": "sandbox", "data_dir": str(data_dir), **WEBHOOKS_TO_LOOPBACK,
                                         **settings}, environ={}), store, clock=clock)
        tokens = await runtime.accounts.bootstrap()
        assert tokens is not None
        app = await runtime.start_tracking()
        await runtime.start_worker()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app),
                                         base_url="http://api.test") as api, \
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://track.test") as tracker:
                made = Operated(runtime, api, tracker, clock, tokens[0], tokens[1], receiver)
                try:
                    yield made
                finally:
                    await made.stop_inbound()
        finally:
            await runtime.stop()
