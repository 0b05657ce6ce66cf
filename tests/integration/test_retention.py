"""Retention on SQLite and PostgreSQL: each server's messages, with everything hanging off them, and its webhook
posts go after its RetentionDays (the default 45, or its own 7–365), in bounded batches; what is still to be
delivered stays; stats rollups and suppressions stay. Real API, real worker, a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from operate_helpers import Operated, operated
from posthouse.server.services.retention import RetentionService
from posthouse.server.store.base import Store
from support import assert_api_error, async_wait_for


@pytest.fixture
async def h(store: Store, tmp_path: Path) -> AsyncIterator[Operated]:
    async for made in operated(store, tmp_path / "data"):
        yield made


async def test_retention_deletes_what_expired_per_server_and_keeps_the_rest(h: Operated) -> None:
    short_id, short_token = await h.create_server("short", RetentionDays=7)
    default_id = int((await h.api.get("/server", headers=h.headers())).json()["ID"])
    for token in (h.server_token, short_token):
        await h.webhook(token)
    # Day 0: a message on each server, one recipient opening it, another bouncing (suppressed after).
    old = {}
    for name, token in (("default", h.server_token), ("short", short_token)):
        old[name] = [await h.send(token, To="ann@example.com, HardBounce@bounce-testing.postmarkapp.com"),
                     await h.send(token)]
    await h.settle()
    await h.open_pixel(old["short"][1], "ann@example.com")
    await h.settle()
    old_rows = await h.rows_naming(old["short"])
    assert all(old_rows[t] for t in ("messages", "deliveries", "events", "message_metadata", "message_links",
                                     "tracking_hits", "bounces", "engagements")), old_rows
    posts_before = await h.count("webhook_posts", "WHERE server_id = ?", (short_id,))
    assert posts_before >= 3 and await h.count("webhook_attempts") >= posts_before
    suppressed = await h.count("suppressions")
    assert suppressed == 2  # the bouncing address on each server
    stats = await h.stats()

    # Day 10: new mail on both; the short server's day-0 mail is past its 7 days, the default's is not.
    h.clock.advance(days=10)
    new = {"default": await h.send(), "short": await h.send(short_token)}
    await h.settle()
    retention = RetentionService(h.store, h.runtime.accounts, h.clock, batch_size=1, subject_batch=2)
    done = await retention.sweep()
    assert done.messages == 2 and done.bounces == 0 and done.webhook_posts == posts_before
    assert await h.rows_naming(old["short"]) == {table: 0 for table in old_rows}
    assert await h.count("webhook_posts", "WHERE server_id = ? AND created_at < ?",
                         (short_id, h.clock.micros() - 86_400_000_000)) == 0
    assert await h.count("webhook_attempts", "WHERE post_id NOT IN (SELECT id FROM webhook_posts)") == 0
    assert (await h.rows_naming(old["default"]))["messages"] == 2
    assert (await h.rows_naming([new["short"]]))["messages"] == 1
    assert_api_error(await h.details(old["short"][1], short_token), 701)
    assert (await h.details(old["default"][1])).status_code == 200
    assert {k: v for k, v in (await h.stats()).items() if k in stats} == stats  # aggregates kept for ever
    assert await h.count("suppressions") == suppressed  # a suppression is what stops mail to a bounced address
    assert (await retention.sweep()).total == 0  # nothing left: a second pass finds nothing

    # Day 46: the default server's day-0 mail (45 days) goes too, and the short server's day-10 mail.
    h.clock.advance(days=36)
    done = await retention.sweep()
    assert done.messages == 3
    assert (await h.rows_naming(old["default"]))["messages"] == 0
    assert await h.count("messages") == 1 and (await h.rows_naming([new["default"]]))["messages"] == 1
    assert await h.count("webhook_posts", "WHERE server_id = ?", (default_id,)) > 0  # the day-10 ones
    assert {k: v for k, v in (await h.stats()).items() if k in stats} == stats


async def test_mail_still_to_deliver_is_kept_and_a_scheduled_message_counts_from_its_send_time(h: Operated) -> None:
    _, token = await h.create_server("short", RetentionDays=7)
    scheduled = await h.send(token, SendAt=(h.clock.now() + timedelta(days=20)).isoformat())
    sent = await h.send(token)
    await h.settle()
    h.clock.advance(days=15)  # received 15 days ago, but due in 5
    done = await h.runtime.retention.sweep()
    assert done.messages == 1
    assert (await h.rows_naming([scheduled]))["messages"] == 1 and (await h.rows_naming([sent]))["messages"] == 0
    h.clock.advance(days=6)  # now sent (due a day ago) ...
    await h.settle()
    assert (await h.runtime.retention.sweep()).messages == 0  # ... and kept: its 7 days count from its send time
    h.clock.advance(days=8)
    assert (await h.runtime.retention.sweep()).messages == 1


async def test_retention_days_is_a_server_setting_between_7_and_365(h: Operated) -> None:
    answer = await h.api.get("/server", headers=h.headers())
    assert answer.json()["RetentionDays"] == 45  # Postmark's default, from the retention_days setting
    for bad in (6, 366, 0):
        assert_api_error(await h.api.put("/server", headers=h.headers(), json={"RetentionDays": bad}), 1620)
    edited = await h.api.put("/server", headers=h.headers(), json={"RetentionDays": 365})
    assert edited.status_code == 200 and edited.json()["RetentionDays"] == 365
    listed = await h.api.get("/servers?count=10&offset=0", headers=h.account_headers)
    assert [s["RetentionDays"] for s in listed.json()["Servers"]] == [365]
    assert (await h.api.put("/server", headers=h.headers(), json={"Color": "Red"})).json()["RetentionDays"] == 365


async def test_a_deleted_servers_mail_expires_by_the_default(h: Operated) -> None:
    server_id, token = await h.create_server("gone", RetentionDays=365)
    message = await h.send(token)
    await h.settle()
    assert (await h.api.delete(f"/servers/{server_id}", headers=h.account_headers)).status_code == 200
    h.clock.advance(days=44)
    assert (await h.runtime.retention.sweep()).messages == 0
    h.clock.advance(days=2)
    assert (await h.runtime.retention.sweep()).messages == 1
    assert (await h.rows_naming([message]))["messages"] == 0


@pytest.fixture
async def hi(store: Store, tmp_path: Path) -> AsyncIterator[Operated]:
    """With the inbound listener: no SPF lookups (no DNS here), and a failed inbound post retried in 30 days."""
    async for made in operated(store, tmp_path / "data", inbound_spf="false", smtp_hostname="mx.posthouse.test",
                               inbound_retry_schedule="30d"):
        yield made


async def inbound_rows(h: Operated, server_id: int) -> int:
    return await h.count("inbound_messages", "WHERE server_id = ?", (server_id,))


async def test_received_mail_expires_with_its_posts_and_its_bytes_once_no_recipient_keeps_them(hi: Operated) -> None:
    h = hi
    default_id = int((await h.api.get("/server", headers=h.headers())).json()["ID"])
    short_id, short_token = await h.create_server("short", RetentionDays=7, InboundHookUrl=h.receiver.url)
    default_address, short_address = await h.inbound_address(), await h.inbound_address(short_token)
    # Day 0: one message to both servers (one stored copy, two rows), one to the short server alone.
    await h.receive("ann@sender.example", [default_address, short_address], subject="to both")
    await h.receive("ann@sender.example", [short_address], subject="to short")
    await h.settle()
    assert len(h.receiver.requests) == 2 and await h.count("inbound_contents") == 2
    short_posts = await h.count("webhook_posts", "WHERE inbound_id IS NOT NULL")
    assert short_posts == 2 and await h.count("webhook_attempts") == 2
    # Day 3: a message whose post fails; it is retried in 30 days, so it waits for its post.
    h.clock.advance(days=3)
    h.receiver.script.append(500)
    await h.receive("bob@sender.example", [short_address], subject="waiting")
    await async_wait_for(lambda: _true(len(h.receiver.requests) == 3))
    await h.settle()

    h.clock.advance(days=7)  # day 10: the short server's day-0 mail is past its 7 days, and day 3's too
    retention = RetentionService(h.store, h.runtime.accounts, h.clock, batch_size=1)
    done = await retention.sweep()
    assert done.inbound == 2
    assert await inbound_rows(h, short_id) == 1  # the one still waiting for its post
    assert await inbound_rows(h, default_id) == 1
    assert await h.count("inbound_contents") == 2  # the shared copy (the default server's row) and the waiting one
    assert await h.count("webhook_posts", "WHERE inbound_id IS NOT NULL") == 1
    assert await h.count("webhook_attempts", "WHERE post_id NOT IN (SELECT id FROM webhook_posts)") == 0
    listed = await h.api.get("/messages/inbound?count=50&offset=0", headers=h.headers(short_token))
    assert [m["Subject"] for m in listed.json()["InboundMessages"]] == ["waiting"]
    assert (await retention.sweep()).inbound == 0

    h.clock.advance(days=36)  # day 46: the default server's day-0 row goes, and the copy nobody keeps now
    assert (await retention.sweep()).inbound == 1
    assert await inbound_rows(h, default_id) == 0 and await h.count("inbound_contents") == 1


async def test_a_deleted_servers_received_mail_expires_by_the_default(hi: Operated) -> None:
    h = hi
    server_id, token = await h.create_server("gone", RetentionDays=365)
    await h.receive("ann@sender.example", [await h.inbound_address(token)])
    assert (await h.api.delete(f"/servers/{server_id}", headers=h.account_headers)).status_code == 200
    h.clock.advance(days=44)
    assert (await h.runtime.retention.sweep()).inbound == 0
    h.clock.advance(days=2)
    assert (await h.runtime.retention.sweep()).inbound == 1
    assert await h.count("inbound_messages") == 0 and await h.count("inbound_contents") == 0


async def _true(value: bool) -> bool:
    return value
