"""Claims served from what the acceptance kept (store/fresh.py), on SQLite and PostgreSQL: the same
deliveries as read from the database, and the database still answers whatever the cache does not hold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from posthouse import wire
from posthouse.server.domain.messages import compose
from posthouse.server.errors import StoreError
from posthouse.server.services.accounts import DEFAULT_STREAMS
from posthouse.server.store.base import ClaimedDelivery, Store

T0 = 1_800_000_000_000_000
LEASE = 60_000_000
NOW = datetime.fromtimestamp(T0 / 1e6, UTC)

REQUESTS = [
    wire.EmailRequest(sender="App <app@example.com>", to="a@example.com, b@example.com", subject="plain",
                      text_body="x"),
    wire.EmailRequest(sender='"Zoë, Ltd" <zoe@exämple.com>', to="c@example.com", subject="Grüße",
                      tag="welcome", metadata={"user": "42", "plan": "pro"},
                      html_body="<p>hi <a href='https://e.com'>x</a></p>",
                      track_opens=True, track_links="HtmlAndText", message_stream="outbound"),
    wire.EmailRequest(sender="app@example.com", to="d@example.com", subject="b", text_body="y",
                      track_links="TextOnly"),
]


async def accept(store: Store, *, sandboxed: bool = False) -> list[str]:
    server_id = await store.create_server("s", {}, "hash", "hint", T0, DEFAULT_STREAMS)
    messages = [compose(r, now=NOW) for r in REQUESTS]
    await store.insert_messages(server_id, messages, sandboxed=sandboxed, now=T0)
    return [m.message_id for m in messages]


def by_row(claimed: list[ClaimedDelivery]) -> dict[int, ClaimedDelivery]:
    return {d.id: d for d in claimed}


@pytest.mark.parametrize("sandboxed", [False, True])
async def test_a_claim_from_the_cache_equals_the_claim_from_the_database(store: Store, sandboxed: bool) -> None:
    await accept(store, sandboxed=sandboxed)
    fresh = store.fresh_messages
    assert len(fresh) == len(REQUESTS)
    cached = await store.claim_deliveries("w1", T0, 100, T0 + LEASE)
    assert (fresh.hits, fresh.misses, len(fresh)) == (len(REQUESTS), 0, 0)
    # Given back, the same rows are claimed again: now every message is read from the database.
    await store.release_claims("w1", [d.id for d in cached], T0)
    read = await store.claim_deliveries("w1", T0, 100, T0 + LEASE)
    assert fresh.misses == len(REQUESTS)
    assert len(cached) == 4 and by_row(cached) == by_row(read)
    tagged = next(d for d in read if d.tag == "welcome")
    assert tagged.metadata == {"user": "42", "plan": "pro"} and tagged.tracked and tagged.sandboxed is sandboxed


async def test_a_failed_acceptance_leaves_nothing_in_the_cache(store: Store) -> None:
    """The rows are kept before the commit; a transaction that fails takes them out again, so a claim can
    only ever see what was committed (here: the first message of that id, not the refused second)."""
    server_id = await store.create_server("s", {}, "hash", "hint", T0, DEFAULT_STREAMS)
    first = compose(REQUESTS[0], now=NOW)
    await store.insert_messages(server_id, [first], sandboxed=False, now=T0)
    clash = compose(REQUESTS[2], now=NOW)
    clash.message_id = first.message_id  # the primary key refuses it
    with pytest.raises(StoreError):
        await store.insert_messages(server_id, [clash], sandboxed=False, now=T0)
    assert len(store.fresh_messages) == 0
    claimed = await store.claim_deliveries("w1", T0, 100, T0 + LEASE)
    assert {d.content for d in claimed} == {first.content} and len(claimed) == 2


async def test_scheduled_and_wholly_suppressed_messages_are_not_kept(store: Store) -> None:
    server_id = await store.create_server("s", {}, "hash", "hint", T0, DEFAULT_STREAMS)
    later = compose(wire.EmailRequest(sender="app@example.com", to="e@example.com", subject="later", text_body="z",
                                      send_at="2027-01-15T10:00:00Z"), now=NOW)
    blocked = compose(wire.EmailRequest(sender="app@example.com", to="f@example.com", subject="no", text_body="z"),
                      now=NOW)
    await store.insert_messages(server_id, [later, blocked], sandboxed=False, now=T0,
                                suppressed={blocked.message_id: {"f@example.com"}})
    assert len(store.fresh_messages) == 0
