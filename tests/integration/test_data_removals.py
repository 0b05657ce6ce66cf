"""Postmark's Data Removal API (docs/postmark-api.md §8.4) on SQLite and PostgreSQL: `POST /data-removals` answers
Pending at once, the housekeeping worker removes everything stored about the address on every server in the
background, and `GET /data-removals/{id}` turns Done, with the rows removed so far. Real API, real worker."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from operate_helpers import Operated, operated
from posthouse.server.store.base import Store
from support import assert_api_error, async_wait_for

ANN = "ann@example.com"
BOUNCE = [{"Name": "X-PM-Bounce-Type", "Value": "HardBounce"}]


@pytest.fixture
async def h(store: Store, tmp_path: Path) -> AsyncIterator[Operated]:
    async for made in operated(store, tmp_path / "data"):
        yield made


async def request(h: Operated, address: str = "Ann@Example.com") -> dict[str, object]:
    answer = await h.api.post("/data-removals", headers=h.account_headers, json={
        "RequestedBy": "dpo@example.com", "RequestedFor": address, "NotifyWhenCompleted": False})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def done(h: Operated, removal_id: object) -> dict[str, object]:
    async def finished() -> dict[str, object] | None:
        answer = await h.api.get(f"/data-removals/{removal_id}", headers=h.account_headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json()) if answer.json()["Status"] == "Done" else None

    return dict(await async_wait_for(finished, timeout=30))


async def test_everything_about_an_address_goes_and_nothing_else(h: Operated) -> None:
    _, other_token = await h.create_server("other")
    await h.webhook()
    await h.webhook(other_token)
    to_ann = await h.send(To=f"{ANN}, bob@example.com", Subject="Hello Ann")
    cc_ann = await h.send(other_token, To="bob@example.com", Cc=ANN)
    from_ann = await h.send(From=f"Ann <{ANN}>", To="carol@example.com")
    bobs = await h.send(To="bob@example.com", Subject="Hello Bob")
    bulk = await h.api.post("/email/bulk", headers=h.headers(), json={
        "From": "app@example.com", "Subject": "News", "TextBody": "Hi {{name}}",
        "Messages": [{"To": ANN, "TemplateModel": {"name": "Ann"}}, {"To": "dan@example.com"}]})
    assert bulk.status_code == 200, bulk.text
    await h.settle()
    await h.open_pixel(to_ann, ANN)
    bounced = await h.send(To=ANN, Headers=BOUNCE)  # a hard bounce: a bounce record and a suppression for Ann
    manual = await h.api.post("/message-streams/outbound/suppressions", headers=h.headers(other_token),
                              json={"Suppressions": [{"EmailAddress": ANN}]})
    assert manual.json()["Suppressions"][0]["Status"] == "Suppressed"

    async def bulk_done() -> bool:
        return await h.count("bulk_requests", "WHERE status = 'Completed'") == 1

    await async_wait_for(bulk_done)
    await h.settle()
    ann_messages = [to_ann, cc_ann, from_ann, bounced]
    ann_messages += [str(r[0]) for r in await h.store.query(
        "SELECT message_id FROM deliveries WHERE recipient = ? AND message_id NOT IN (?, ?, ?, ?)",
        (ANN, *ann_messages))]
    assert len(ann_messages) == 5  # and the one the bulk request sent
    assert await h.count("suppressions", "WHERE email = ?", (ANN,)) == 2
    assert await h.count("bounces", "WHERE lower(email) = ?", (ANN,)) == 1
    posts = await h.posts_naming(ANN)
    assert posts > 0 and await h.count("tracking_hits", "WHERE recipient = ?", (ANN,)) == 1
    stats = await h.stats()

    created = await request(h)
    assert created["Status"] == "Pending" and isinstance(created["ID"], int) and created["ID"] > 0
    finished = await done(h, created["ID"])
    # Removed counts each message once (with what hangs off it), and each row found apart from a message.
    assert finished["ID"] == created["ID"] and finished["Removed"] == len(ann_messages) + 2 + posts + 1

    assert await h.rows_naming(ann_messages) == {t: 0 for t in await h.rows_naming(ann_messages)}
    assert await h.count("deliveries", "WHERE lower(recipient) = ?", (ANN,)) == 0
    assert await h.count("messages", "WHERE lower(from_email) = ?", (ANN,)) == 0
    assert await h.count("suppressions", "WHERE email = ?", (ANN,)) == 0
    assert await h.count("bounces", "WHERE lower(email) = ?", (ANN,)) == 0
    assert await h.count("tracking_hits", "WHERE lower(recipient) = ?", (ANN,)) == 0
    assert await h.posts_naming(ANN) == 0
    assert await h.count("bulk_requests") == 0
    assert await h.count("webhook_attempts", "WHERE post_id NOT IN (SELECT id FROM webhook_posts)") == 0
    # Bob's message stays, with its events and posts; the aggregates stay as they were.
    assert (await h.rows_naming([bobs]))["messages"] == 1 and (await h.details(bobs)).status_code == 200
    assert await h.posts_naming("bob@example.com") > 0
    assert await h.stats() == stats
    # The finished request keeps only a digest of the address.
    row = await h.store.query_one("SELECT requested_for, status, completed_at FROM data_removals WHERE id = ?",
                                  (created["ID"],))
    assert row is not None and row[0] == hashlib.sha256(ANN.encode()).hexdigest() and row[1] == "Done" and row[2]
    assert ANN not in str(await h.store.query("SELECT * FROM data_removals"))


async def test_mail_to_the_address_not_yet_delivered_is_cancelled_and_removed(h: Operated) -> None:
    later = await h.send(To=ANN, SendAt=(h.clock.now() + timedelta(days=20)).isoformat())
    created = await request(h, ANN)
    await done(h, created["ID"])
    assert (await h.rows_naming([later]))["messages"] == 0
    assert await h.count("deliveries") == 0


async def test_refusals(h: Operated) -> None:
    url = "/data-removals"
    body = {"RequestedBy": "dpo@example.com", "RequestedFor": ANN, "NotifyWhenCompleted": True}
    assert_api_error(await h.api.post(url, headers=h.headers(), json=body), 10, 401)
    assert_api_error(await h.api.post(url, headers=h.account_headers, content=b""), 1300)
    assert_api_error(await h.api.post(url, headers=h.account_headers, json={**body, "RequestedFor": "not-an-address"}),
                     1300, text="RequestedFor")
    assert_api_error(await h.api.post(url, headers=h.account_headers, json={**body, "RequestedFor": None}), 1300)
    assert_api_error(await h.api.post(url, headers=h.account_headers, json={**body, "RequestedBy": ""}), 1300)
    assert_api_error(await h.api.get(f"{url}/987654", headers=h.account_headers), 1301)
    assert_api_error(await h.api.get(f"{url}/abc", headers=h.account_headers), 1301)
    assert_api_error(await h.api.get(f"{url}/1", headers=h.headers()), 10, 401)
    assert await h.count("data_removals") == 0


async def test_two_nodes_work_on_one_request_one_at_a_time(h: Operated) -> None:
    """The request is leased: a second node finds nothing to take while the first holds it."""
    removals = h.runtime.removals
    removal_id = await h.store.create_data_removal("dpo@example.com", ANN, False, h.clock.micros())
    now = h.clock.micros()
    held = await h.store.claim_data_removal("node-a", now, now + 60_000_000)
    assert held is not None and held.id == removal_id
    assert await h.store.claim_data_removal("node-b", now, now + 60_000_000) is None
    assert await removals.run_pending("node-b") == 0
    assert (await removals.get(removal_id)).status == "Pending"
    h.clock.advance(seconds=61)  # node A died holding it: its lease runs out and node B finishes the work
    assert await removals.run_pending("node-b") == 1
    assert (await removals.get(removal_id)).status == "Done"


@pytest.fixture
async def hi(store: Store, tmp_path: Path) -> AsyncIterator[Operated]:
    """With the inbound listener (no SPF lookups: no DNS here)."""
    async for made in operated(store, tmp_path / "data", inbound_spf="false", smtp_hostname="mx.posthouse.test"):
        yield made


async def test_inbound_mail_from_or_to_the_address_goes_with_its_posts_and_the_rule_naming_it(hi: Operated) -> None:
    h = hi
    _, other_token = await h.create_server("other", InboundHookUrl=h.receiver.url)
    edited = await h.api.put("/server", headers=h.headers(), json={"InboundHookUrl": h.receiver.url})
    assert edited.status_code == 200, edited.text
    for rule in ("Ann@Example.com", "spam.example"):
        made = await h.api.post("/triggers/inboundrules", headers=h.headers(other_token), json={"Rule": rule})
        assert made.status_code == 200, made.text
    mine, other = await h.inbound_address(), await h.inbound_address(other_token)
    await h.receive("bob@sender.example", [mine], cc=f"Ann <{ANN}>", subject="copied to Ann")
    await h.receive("bob@sender.example", [mine], to=f"Ann <{ANN}>, {mine}", subject="to Ann")
    await h.receive("bounces@lists.example", [mine, other], sender=f"Ann <{ANN}>", subject="from Ann")
    await h.receive(ANN, [mine], sender="Dan <dan@example.org>", subject="sent by Ann's mailbox")
    await h.receive("carol@sender.example", [mine, other], subject="Carol's")
    await h.settle()
    # Posted: 5 to mine, 1 to other (the other server's rule blocks Ann's From); 5 stored copies.
    assert len(h.receiver.requests) == 6 and await h.count("inbound_contents") == 5
    statuses = {r[0]: r[1] for r in await h.store.query("SELECT subject || '/' || server_id, status "
                                                         "FROM inbound_messages")}
    assert sorted(statuses.values()).count("blocked") == 1, statuses
    ann_rows = await h.count("inbound_messages", "WHERE subject <> ?", ("Carol's",))
    assert ann_rows == 5
    ann_posts = await h.count("webhook_posts", "WHERE inbound_id IN (SELECT id FROM inbound_messages WHERE "
                              "subject <> ?)", ("Carol's",))
    assert ann_posts == 4

    created = await request(h)
    finished = await done(h, created["ID"])
    assert finished["Removed"] == ann_rows + 1  # each message row once (its posts with it), and the rule
    rows = await h.store.query("SELECT subject FROM inbound_messages ORDER BY server_id")
    assert [r[0] for r in rows] == ["Carol's", "Carol's"]
    assert await h.count("inbound_contents") == 1  # Carol's one copy; every copy naming Ann is gone
    assert await h.count("webhook_posts", "WHERE inbound_id IS NOT NULL") == 2
    assert await h.count("webhook_attempts", "WHERE post_id NOT IN (SELECT id FROM webhook_posts)") == 0
    rules = await h.api.get("/triggers/inboundrules", headers=h.headers(other_token))
    assert [r["Rule"] for r in rules.json()["InboundRules"]] == ["spam.example"]  # a domain names nobody
    listed = await h.api.get("/messages/inbound", params={"count": "50", "offset": "0", "recipient": ANN},
                             headers=h.headers())
    assert listed.json()["TotalCount"] == 0
