"""SMTP without a valid token, and SMTP as a way around the API's rules.

The threats: one client address could hold every one of the 1,000 connections, five minutes each,
without ever authenticating; and a message the API refuses (a 100,000-character Subject, say) was
accepted over SMTP, stored, listed and posted to webhooks like any other. The real SMTP server and
the real services run in-process on a real database; smtplib and aiosmtplib talk to it over loopback.
"""

from __future__ import annotations

import asyncio
import base64
import smtplib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiosmtplib
import httpx
import pytest

from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.smtp.server import Listener
from posthouse.server.store.base import Store

FROM = "app@example.com"
TO = "user@example.com"


@dataclass
class Served:
    runtime: Runtime
    port: int
    token: str
    api: httpx.AsyncClient


@pytest.fixture
async def served(store: Store, tmp_path, request: pytest.FixtureRequest) -> AsyncIterator[Served]:  # type: ignore[no-untyped-def]
    overrides: dict[str, Any] = getattr(request, "param", {})
    settings = load_settings({"data_dir": str(tmp_path), "delivery": "sandbox", **overrides}, environ={})
    runtime = Runtime(settings, store)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    server = runtime.smtp_server()
    ((_, port),) = await server.start([Listener("127.0.0.1", 0)])
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://posthouse.test") as api:
        try:
            yield Served(runtime, port, tokens[0], api)
        finally:
            await server.stop(grace=2)
            await runtime.stop()


async def count(store: Store, table: str) -> int:
    row = await store.query_one(f"SELECT count(*) FROM {table}")
    return int(row[0]) if row else -1


# -- connections per client address ---------------------------------------------------------------


@pytest.mark.parametrize("served", [{"smtp_max_connections_per_client": 3}], indirect=True)
async def test_one_client_address_cannot_take_every_connection(served: Served) -> None:
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=served.port, timeout=10, start_tls=False) for _ in range(3)]
    for client in clients:
        await client.connect()
    try:
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as refused:
            await aiosmtplib.SMTP(hostname="127.0.0.1", port=served.port, timeout=10, start_tls=False).connect()
        assert (refused.value.code, refused.value.message) == (
            421, "4.7.0 Too many connections from your address, try again later")
        # Another address is not held up by this one.
        other = aiosmtplib.SMTP(hostname="127.0.0.1", port=served.port, timeout=10, start_tls=False,
                                source_address=("127.0.0.2", 0))
        response = await other.connect()
        assert response.code == 220
        await other.quit()
        # One of the three leaves: there is room for this address again.
        await clients.pop().quit()
        again = aiosmtplib.SMTP(hostname="127.0.0.1", port=served.port, timeout=10, start_tls=False)

        async def connects() -> bool:
            try:
                await again.connect()
            except aiosmtplib.SMTPConnectResponseError:
                return False
            return True

        deadline = time.monotonic() + 5
        while not await connects():
            assert time.monotonic() < deadline, "the freed connection was not counted off"
            await asyncio.sleep(0.05)  # the count drops when the server sees the close
        await again.quit()
    finally:
        for client in clients:
            client.close()


# -- the idle timeout before AUTH ----------------------------------------------------------------


@pytest.mark.parametrize("served", [{"smtp_unauthenticated_timeout": "1s"}], indirect=True)
async def test_an_unauthenticated_client_is_cut_off_sooner(served: Served) -> None:
    async def session(login: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        assert (await reader.readline()).startswith(b"220 ")
        writer.write(b"EHLO client.test\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        if login:
            plain = base64.b64encode(f"\0{served.token}\0{served.token}".encode())
            writer.write(b"AUTH PLAIN " + plain + b"\r\n")
            assert (await reader.readline()).startswith(b"235 ")
        return reader, writer

    reader, writer = await session(login=False)
    started = time.monotonic()
    line = await asyncio.wait_for(reader.readline(), 10)
    assert line.startswith(b"421 4.4.2 ") and b"timeout exceeded" in line
    assert 0.8 < time.monotonic() - started < 3
    writer.close()

    reader, writer = await session(login=True)  # authenticated: the 5-minute command timeout applies
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readline(), 2.5)
    writer.write(b"NOOP\r\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 ")
    writer.close()


# -- what the API refuses, SMTP refuses, in the API's words ------------------------------------------


def fold(value: str) -> str:
    """A long header value folded into lines of at most ~80 characters (RFC 5322 §2.2.3)."""
    return "\r\n ".join(value[i:i + 70] for i in range(0, len(value), 70))


# (name, headers of the SMTP message, the same message as an API request)
CASES: list[tuple[str, list[str], dict[str, Any]]] = [
    ("subject-100000", [f"Subject: {fold('s' * 100_000)}"], {"Subject": "s" * 100_000}),
    ("subject-2001", [f"Subject: {'s' * 70}" + "\r\n " + "s" * 1930], {"Subject": "s" * 70 + " " + "s" * 1930}),
    ("subject-line-break", ["Subject: =?utf-8?q?Hi=0D=0ABcc:_victim@example.com?="],
     {"Subject": "Hi\r\nBcc: victim@example.com"}),
    ("tag-1001", [f"X-PM-Tag: {'t' * 1001}"], {"Tag": "t" * 1001}),
    ("metadata-11-keys", [f"X-PM-Metadata-k{i}: v" for i in range(11)],
     {"Metadata": {f"k{i}": "v" for i in range(11)}}),
    ("metadata-long-key", [f"X-PM-Metadata-{'k' * 21}: v"], {"Metadata": {"k" * 21: "v"}}),
    ("metadata-long-value", [f"X-PM-Metadata-key: {'v' * 81}"], {"Metadata": {"key": "v" * 81}}),
    # 50 in To, and the envelope's user@example.com, not shown in any header, is a Bcc: 51 recipients.
    ("recipients-51", ["To: " + fold(", ".join(f"u{i}@example.com" for i in range(50)))],
     {"To": ", ".join(f"u{i}@example.com" for i in range(50)), "Bcc": TO}),
]


def message(headers: list[str]) -> str:
    names = {h.split(":", 1)[0].lower() for h in headers}
    base = [f"From: {FROM}"] + ([] if "to" in names else [f"To: {TO}"]) + ([] if "subject" in names else ["Subject: x"])
    return "\r\n".join(base + headers) + "\r\n\r\nbody\r\n"


@pytest.mark.parametrize(("name", "headers", "fields"), CASES, ids=[c[0] for c in CASES])
async def test_smtp_refuses_what_the_api_refuses(served: Served, name: str, headers: list[str],
                                                 fields: dict[str, Any]) -> None:
    api = await served.api.post("/email", json={"From": FROM, "To": TO, "TextBody": "body", **fields},
                                headers={"X-Postmark-Server-Token": served.token, "Accept": "application/json"})
    assert api.status_code == 422, api.text
    error = api.json()

    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=served.port, timeout=10, start_tls=False)
    await client.connect()
    try:
        await client.login(served.token, served.token)
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await client.sendmail(FROM, [TO], message(headers))
    finally:
        client.close()
    assert refused.value.code == 554
    assert refused.value.message == f"5.6.0 {error['Message']} (ErrorCode {error['ErrorCode']})"
    assert await count(served.runtime.store, "messages") == 0


async def test_a_line_break_in_an_encoded_display_name_is_refused(served: Served) -> None:
    def submit() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", served.port, timeout=10) as client:
            client.login(served.token, served.token)
            client.mail(FROM)
            client.rcpt(TO)
            return client.data(("From: =?utf-8?q?App=0D=0ABcc:_victim@example.com?= <app@example.com>\r\n"
                                f"To: {TO}\r\nSubject: x\r\n\r\nbody\r\n").encode())

    code, text = await asyncio.to_thread(submit)
    assert (code, text) == (554, b"5.6.0 Invalid 'From' address: 'App Bcc: victim@example.com <app@example.com>'. "
                                 b"(ErrorCode 300)")
    assert await count(served.runtime.store, "messages") == 0


async def test_messages_within_the_limits_are_still_accepted(served: Served) -> None:
    headers = [f"Subject: {fold('s' * 1900)}", f"X-PM-Tag: {'t' * 1000}",
               *(f"X-PM-Metadata-k{i}: {'v' * 80}" for i in range(10)),
               "To: " + fold(", ".join(f"u{i}@example.com" for i in range(49)))]
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=served.port, timeout=10, start_tls=False)
    await client.connect()
    try:
        await client.login(served.token, served.token)
        errors, text = await client.sendmail(FROM, [TO], message(headers))
    finally:
        client.close()
    assert errors == {} and text.startswith("2.0.0 Ok: queued as ")
    assert await count(served.runtime.store, "messages") == 1
