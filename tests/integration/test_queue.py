"""The queue on a real database (SQLite and PostgreSQL): claims, leases, retries, completion
(docs/architecture.md §3)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from posthouse import wire
from posthouse.server.domain.messages import compose
from posthouse.server.domain.statuses import DeliveryState, EventType
from posthouse.server.services import notifications
from posthouse.server.services.accounts import DEFAULT_STREAMS
from posthouse.server.store.base import BounceRecord, ClaimedDelivery, DeliveryUpdate, Store
from posthouse.server.store.webhooks import _TRIGGER_COLUMNS as TRIGGER_COLUMNS
from posthouse.server.store.webhooks import WebhookRecord

T0 = 1_800_000_000_000_000  # a fixed "now" in µs
LEASE = 60_000_000


async def make_server(store: Store) -> int:
    return await store.create_server("s", {}, "hash", "hint", T0, DEFAULT_STREAMS)


async def enqueue(store: Store, server_id: int, count: int, recipients: int = 1) -> list[str]:
    messages = [
        compose(wire.EmailRequest(sender="app@example.com",
                                  to=", ".join(f"r{i}-{j}@example.com" for j in range(recipients)),
                                  subject=f"m{i}", text_body="x"),
                now=datetime.fromtimestamp(T0 / 1e6, UTC))
        for i in range(count)
    ]
    await store.insert_messages(server_id, messages, sandboxed=False, now=T0)
    return [m.message_id for m in messages]


async def states(store: Store) -> dict[str, int]:
    return await store.count_deliveries()


async def test_claim_leases_rows_once_and_counts_the_attempt(store: Store) -> None:
    server_id = await make_server(store)
    ids = await enqueue(store, server_id, 5, recipients=2)
    first = await store.claim_deliveries("w1", T0, 4, T0 + LEASE)
    assert len(first) == 4
    assert all(d.attempts == 1 for d in first)
    assert {d.message_id for d in first} <= set(ids)
    assert first[0].content.startswith(b"From: ")
    rest = await store.claim_deliveries("w2", T0, 100, T0 + LEASE)
    assert len(rest) == 6
    assert not {d.id for d in first} & {d.id for d in rest}
    assert await store.claim_deliveries("w3", T0, 100, T0 + LEASE) == []
    assert await states(store) == {"sending": 10}


async def test_whole_message_claims_take_every_due_row_of_a_message(store: Store) -> None:
    """Without VERP a message's rows go in one SMTP transaction: a claim that reaches a message takes all
    its due rows, however the limit falls, and concurrent whole-message claimers still share nothing."""
    server_id = await make_server(store)
    ids = await enqueue(store, server_id, 6, recipients=3)
    first = await store.claim_deliveries("w1", T0, 4, T0 + LEASE, whole_messages=True)
    by_message: dict[str, int] = {}
    for d in first:
        by_message[d.message_id] = by_message.get(d.message_id, 0) + 1
    assert set(by_message.values()) == {3} and len(by_message) <= 4
    plain = await store.claim_deliveries("w2", T0, 1, T0 + LEASE)  # the row-wise claim may split a message
    assert len(plain) == 1
    batches = await asyncio.gather(*(store.claim_deliveries(f"c{i}", T0, 1, T0 + LEASE, whole_messages=True)
                                     for i in range(6)))
    rows = [d.id for batch in batches for d in batch] + [d.id for d in first] + [d.id for d in plain]
    assert len(rows) == len(set(rows)) == 18 and {d.message_id for b in batches for d in b} <= set(ids)


async def test_expired_lease_is_claimable_again_and_never_deleted(store: Store) -> None:
    server_id = await make_server(store)
    await enqueue(store, server_id, 3)
    claimed = await store.claim_deliveries("dead-worker", T0, 10, T0 + LEASE)
    assert len(claimed) == 3
    assert await store.claim_deliveries("w2", T0 + LEASE - 1, 10, T0 + 2 * LEASE) == []
    again = await store.claim_deliveries("w2", T0 + LEASE, 10, T0 + 2 * LEASE)
    assert sorted(d.id for d in again) == sorted(d.id for d in claimed)
    assert all(d.attempts == 2 for d in again)
    assert sum((await states(store)).values()) == 3
    # The dead worker's late result must not overwrite the new lease holder's row.
    stale = [DeliveryUpdate(d, "dead-worker", DeliveryState.DELIVERED, T0, "250 ok", EventType.DELIVERED, {}, T0)
             for d in claimed]
    await store.record_attempts(stale)
    assert await states(store) == {"sending": 3}


def webhook_record(server_id: int) -> WebhookRecord:
    return WebhookRecord(id=0, server_id=server_id, stream="outbound", url="http://127.0.0.1:9/hook",
                         http_auth_username=None, http_auth_password=None, http_headers=[],
                         triggers={c: True for c in TRIGGER_COLUMNS}, secret="whsec_x", created_at=T0)


def hard_bounce(store: Store, d: ClaimedDelivery, owner: str) -> DeliveryUpdate:
    """A hard-bounce result for `d` as the delivery worker writes it: bounce, suppression, webhook."""
    bounce = BounceRecord(
        server_id=d.server_id, message_id=d.message_id, stream=d.stream, type="HardBounce", type_code=1,
        email=d.recipient, sender=d.sender, subject=d.subject, tag=d.tag, description="hard", details="550",
        bounced_at=T0, inactive=True, can_activate=True, dump="")
    return DeliveryUpdate(d, owner, DeliveryState.BOUNCED, T0, "550 5.1.1 no", EventType.BOUNCED, {}, T0, bounce,
                          webhook_events=[notifications.bounce_event(bounce, d.metadata)],
                          suppression=notifications.suppression_for(bounce, d.tag, d.metadata))


async def trace(store: Store) -> dict[str, int]:
    """How many rows a result leaves besides its delivery row's state."""
    counts = {}
    for table in ("bounces", "suppressions", "events", "webhook_posts"):
        row = await store.query_one(f"SELECT count(*) FROM {table}")
        assert row is not None
        counts[table] = int(row[0])
    return counts


async def test_a_late_result_of_a_lost_lease_leaves_no_trace(store: Store) -> None:
    """A worker whose lease ran out mid-send (paused, partitioned) reports a hard bounce after the row
    was claimed again, by another worker and by itself: neither the state nor a bounce, suppression,
    event or webhook post of the late result is written; the current claim's result is."""
    server_id = await make_server(store)
    await store.create_webhook(webhook_record(server_id))
    await enqueue(store, server_id, 2)
    before = await trace(store)
    first = await store.claim_deliveries("w1", T0, 10, T0 + LEASE)
    elsewhere = await store.claim_deliveries("w2", T0 + LEASE, 1, T0 + 2 * LEASE)  # one row to another worker
    again = await store.claim_deliveries("w1", T0 + LEASE, 10, T0 + 2 * LEASE)  # the other back to w1
    assert len(first) == 2 and len(elsewhere) == 1 and len(again) == 1
    assert {d.id for d in elsewhere + again} == {d.id for d in first}

    await store.record_attempts([hard_bounce(store, d, "w1") for d in first])
    assert await trace(store) == before
    assert await states(store) == {"sending": 2}

    await store.record_attempts([hard_bounce(store, again[0], "w1")])
    after = await trace(store)
    assert after["bounces"] == before["bounces"] + 1
    assert after["suppressions"] == before["suppressions"] + 1
    assert after["webhook_posts"] > before["webhook_posts"]
    assert await states(store) == {"sending": 1, "bounced": 1}


async def test_deferred_rows_wait_for_their_time_and_delivered_rows_finish_the_message(store: Store) -> None:
    server_id = await make_server(store)
    (message_id,) = await enqueue(store, server_id, 1, recipients=2)
    a, b = await store.claim_deliveries("w", T0, 10, T0 + LEASE)
    retry_at = T0 + 5_000_000
    await store.record_attempts([
        DeliveryUpdate(a, "w", DeliveryState.DEFERRED, retry_at, "451 later", EventType.TRANSIENT,
                       {"DeliveryMessage": "451 later"}, T0),
        DeliveryUpdate(b, "w", DeliveryState.DELIVERED, T0, "250 ok", EventType.DELIVERED, {}, T0),
    ])
    record = await store.get_message(server_id, message_id)
    assert record is not None and record.status == "Queued"  # one recipient still pending
    assert await store.claim_deliveries("w", retry_at - 1, 10, retry_at + LEASE) == []
    (again,) = await store.claim_deliveries("w", retry_at, 10, retry_at + LEASE)
    assert again.recipient == a.recipient and again.attempts == 2
    await store.record_attempts([
        DeliveryUpdate(again, "w", DeliveryState.DELIVERED, retry_at, "250 ok", EventType.DELIVERED, {}, retry_at)])
    record = await store.get_message(server_id, message_id)
    assert record is not None and record.status == "Sent"
    types = [e.type for e in await store.list_events(message_id)]
    assert types.count("Queued") == 2 and types.count("Transient") == 1 and types.count("Delivered") == 2
    assert await store.next_due_time() is None


async def test_concurrent_claimers_never_share_a_row(store: Store) -> None:
    server_id = await make_server(store)
    await enqueue(store, server_id, 200)
    batches = await asyncio.gather(*(store.claim_deliveries(f"w{i}", T0, 30, T0 + LEASE) for i in range(10)))
    ids = [d.id for batch in batches for d in batch]
    assert len(ids) == len(set(ids)) == 200


async def test_group_commit_keeps_failures_separate(store: Store) -> None:
    """One caller's failing transaction does not fail the others committed with it."""
    from posthouse.server.errors import StoreError
    from posthouse.server.store.base import Stmt

    server_id = await make_server(store)
    good = enqueue(store, server_id, 3)
    bad = store.transact([Stmt("INSERT INTO servers (name, settings, created_at) VALUES (?, ?, ?)",
                               ("s", "{}", T0))])  # duplicate name
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert isinstance(results[1], StoreError)
    assert len(results[0]) == 3  # type: ignore[arg-type]
    assert await states(store) == {"queued": 3}


async def test_recording_results_can_claim_the_next_rows_in_the_same_transaction(store: Store) -> None:
    server_id = await make_server(store)
    await enqueue(store, server_id, 5)
    first = await store.claim_deliveries("w1", T0, 2, T0 + LEASE)
    done = [DeliveryUpdate(d, "w1", DeliveryState.DELIVERED, T0, "250 ok", EventType.DELIVERED, {}, T0) for d in first]
    nxt = await store.record_attempts(done, claim=("w1", T0, 2, T0 + LEASE, False))
    assert len(nxt) == 2 and not {d.id for d in nxt} & {d.id for d in first}
    assert all(d.attempts == 1 and d.content.startswith(b"From: ") for d in nxt)
    assert await states(store) == {"delivered": 2, "sending": 2, "queued": 1}
    assert await store.record_attempts([]) == []  # without a claim, nothing is claimed


async def test_claims_a_stopping_worker_never_started_are_given_back_uncounted(store: Store) -> None:
    server_id = await make_server(store)
    await enqueue(store, server_id, 3)
    once = await store.claim_deliveries("w1", T0, 1, T0 + LEASE)
    await store.record_attempts([DeliveryUpdate(once[0], "w1", DeliveryState.DEFERRED, T0, "451 later",
                                                EventType.TRANSIENT, {}, T0)])
    claimed = await store.claim_deliveries("w1", T0 + 1, 3, T0 + LEASE)
    assert sorted(d.attempts for d in claimed) == [1, 1, 2]
    await store.release_claims("w2", [d.id for d in claimed], T0 + 2)  # not w2's: nothing changes
    assert await states(store) == {"sending": 3}
    await store.release_claims("w1", [d.id for d in claimed], T0 + 2)
    assert await states(store) == {"queued": 2, "deferred": 1}
    again = await store.claim_deliveries("w2", T0 + 2, 10, T0 + LEASE)  # due at once, attempts as before
    assert sorted(d.attempts for d in again) == [1, 1, 2]


async def test_a_stale_result_with_the_same_attempt_count_as_the_new_claim_is_ignored(store: Store) -> None:
    """The claim guard is (owner, attempt): the attempt count alone does not tell claims apart once a claim
    was given back uncounted. w1 claims, gives the rows back, w2 claims them with the same attempt count;
    w1's late hard bounces must leave no trace (state, bounce, suppression, event, webhook post), and
    w2's results count."""
    server_id = await make_server(store)
    await store.create_webhook(webhook_record(server_id))
    await enqueue(store, server_id, 2)
    before = await trace(store)
    first = await store.claim_deliveries("w1", T0, 10, T0 + LEASE)
    await store.release_claims("w1", [d.id for d in first], T0 + 1)
    second = await store.claim_deliveries("w2", T0 + 1, 10, T0 + LEASE)
    assert sorted((d.id, d.attempts) for d in second) == sorted((d.id, d.attempts) for d in first)

    await store.record_attempts([hard_bounce(store, d, "w1") for d in first])
    assert await trace(store) == before
    assert await states(store) == {"sending": 2}

    await store.record_attempts([DeliveryUpdate(d, "w2", DeliveryState.DELIVERED, T0 + 2, "250 ok",
                                                EventType.DELIVERED, {}, T0 + 2) for d in second])
    assert await states(store) == {"delivered": 2}
    assert (await trace(store))["bounces"] == before["bounces"]


async def test_a_stale_post_result_with_the_same_attempt_count_as_the_new_claim_is_ignored(store: Store) -> None:
    """The webhook outbox's guard is (owner, attempt) too: a post queued again by hand (redeliver: attempts
    start over) and claimed by another dispatcher with the same attempt count ignores the first one's result."""
    from posthouse.server.store.webhooks import PostAttempt, PostUpdate, WebhookEvent, webhook_fanout

    server_id = await make_server(store)
    webhook_id = await store.create_webhook(webhook_record(server_id))
    assert webhook_id is not None
    await store.transact(webhook_fanout([WebhookEvent(server_id, "outbound", "Delivery", "evt", "{}", T0)]))
    (first,) = await store.claim_webhook_posts("w1", T0, 10, T0 + LEASE)
    assert await store.redeliver_webhook_post(webhook_id, first.id, T0 + 1)
    (second,) = await store.claim_webhook_posts("w2", T0 + 1, 10, T0 + LEASE)
    assert (second.id, second.attempts) == (first.id, first.attempts)

    late = PostAttempt(T0 + 2, "delivered", 200, "late", 1.0, None)
    await store.record_webhook_posts([PostUpdate(first, "w1", "delivered", T0 + 2, late)])
    _, (post,) = await store.list_webhook_posts(webhook_id, 0, 10)
    assert (post.state, post.history) == ("sending", [])

    current = PostAttempt(T0 + 3, "delivered", 200, "current", 1.0, None)
    await store.record_webhook_posts([PostUpdate(second, "w2", "delivered", T0 + 3, current)])
    _, (post,) = await store.list_webhook_posts(webhook_id, 0, 10)
    assert post.state == "delivered"
    assert [a.response_excerpt for a in post.history] == ["current"]


async def test_the_last_recipients_finished_at_once_still_mark_their_message_sent(store: Store,
                                                                                 database_url: str) -> None:
    """Two nodes recording the last two recipients of one message at the same moment, each in its own
    transaction: neither may take the other's row for pending and leave the message Queued (PostgreSQL,
    READ COMMITTED). One process merges both into one transaction; two stores on one database do not."""
    from posthouse.server.store import open_store_for

    other = open_store_for(database_url)
    await other.open()
    try:
        server_id = await make_server(store)
        for _ in range(25):
            [message_id] = await enqueue(store, server_id, 1, recipients=2)
            rows = await store.claim_deliveries("w", T0, 2, T0 + LEASE)
            assert {d.message_id for d in rows} == {message_id} and len(rows) == 2
            await asyncio.gather(*(node.record_attempts([DeliveryUpdate(d, "w", DeliveryState.DELIVERED, T0, "250 ok",
                                                                        EventType.DELIVERED, {}, T0)])
                                   for node, d in zip((store, other), rows, strict=True)))
            row = await store.query_one("SELECT status FROM messages WHERE message_id = ?", (message_id,))
            assert row is not None and row[0] == "Sent"
    finally:
        await other.close()
