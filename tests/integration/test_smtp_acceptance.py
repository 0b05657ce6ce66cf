"""SMTP submission in-process on a real database: 250 only after the commit, 451/452 when the store fails."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator

import pytest

from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.smtp.server import Listener
from posthouse.server.store.base import Stmt, Store

MESSAGE = "From: app@example.com\r\nTo: user@example.com\r\nSubject: in-process\r\n\r\nbody\r\n"


@pytest.fixture
async def smtp(store: Store, tmp_path) -> AsyncIterator[tuple[Runtime, int, str]]:  # type: ignore[no-untyped-def]
    settings = load_settings({"data_dir": str(tmp_path), "delivery": "sandbox"}, environ={})
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


def submit(port: int, token: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.login(token, token)  # loopback may AUTH without TLS by default
        client.mail("app@example.com")
        client.rcpt("user@example.com")
        return client.data(MESSAGE.encode())


async def count(store: Store, table: str) -> int:
    row = await store.query_one(f"SELECT count(*) FROM {table}")
    return int(row[0]) if row else -1


async def test_250_names_the_committed_message(smtp) -> None:  # type: ignore[no-untyped-def]
    runtime, port, token = smtp
    code, text = await asyncio.to_thread(submit, port, token)
    assert code == 250
    message_id = text.decode().rsplit(" ", 1)[-1]
    record = await runtime.store.get_message(1, message_id)
    assert record is not None and record.subject == "in-process" and record.recipients == ["user@example.com"]
    assert [e.type for e in await runtime.store.list_events(message_id)] == ["Queued"]


async def test_a_failing_store_answers_451_and_keeps_nothing(smtp) -> None:  # type: ignore[no-untyped-def]
    runtime, port, token = smtp
    await runtime.store.transact([Stmt("DROP TABLE events")])  # every acceptance now fails inside the commit
    code, text = await asyncio.to_thread(submit, port, token)
    assert (code, text[:5]) == (451, b"4.3.0")
    assert await count(runtime.store, "messages") == 0
    assert await count(runtime.store, "deliveries") == 0


async def test_a_full_sqlite_database_answers_452_and_recovers(smtp, database_url) -> None:  # type: ignore[no-untyped-def]
    if not database_url.startswith("sqlite"):
        pytest.skip("max_page_count is SQLite's way to make a full disk on demand")
    runtime, port, token = smtp
    pages = (await runtime.store.query_one("PRAGMA page_count"))[0]  # type: ignore[index]
    await runtime.store.transact([Stmt(f"PRAGMA max_page_count = {int(pages)}")])
    codes = []
    for _ in range(200):  # the first ones still fit in the free space of existing pages
        code, text = await asyncio.to_thread(submit, port, token)
        codes.append((code, text[:5]))
        if code != 250:
            break
    assert codes[-1] == (452, b"4.3.1")
    stored = await count(runtime.store, "messages")
    await runtime.store.transact([Stmt("PRAGMA max_page_count = 1073741823")])
    code, _ = await asyncio.to_thread(submit, port, token)
    assert code == 250
    assert await count(runtime.store, "messages") == stored + 1


async def test_trusted_networks_submit_without_auth_as_their_server(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({"data_dir": str(tmp_path), "delivery": "sandbox",
                              "smtp_trusted_networks": "127.0.0.1/32=default"}, environ={})
    runtime = Runtime(settings, store)
    await runtime.accounts.bootstrap()
    server = runtime.smtp_server()
    ((_, port),) = await server.start([Listener("127.0.0.1", 0)])

    def without_auth(source: str) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as client:
            client.ehlo()
            code, text = client.mail("app@example.com")
            if code != 250:
                return code, text
            # MAIL is open to anyone (a bounce to the return-path domain needs no AUTH): RCPT decides.
            code, text = client.rcpt("user@example.com")
            if code != 250:
                return code, text
            return client.data(MESSAGE.encode())

    try:
        trusted = await asyncio.to_thread(without_auth, "127.0.0.1")
        untrusted = await asyncio.to_thread(without_auth, "127.0.0.2")
    finally:
        await server.stop(grace=2)
        await runtime.stop()
    assert trusted[0] == 250
    message_id = trusted[1].decode().rsplit(" ", 1)[-1]
    default = await store.get_server_by_name("default")
    assert default is not None and await store.get_message(default.id, message_id) is not None
    assert (untrusted[0], untrusted[1][:5]) == (530, b"5.7.0")
    assert await count(store, "messages") == 1
