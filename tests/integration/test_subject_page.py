"""The dashboard's subject search (Store.page_messages): the page found by walking the newest messages of the
other filters is the page the subject index finds, and the walk hands over to the index when it stops short.
On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from posthouse import wire
from posthouse.server.domain.messages import compose
from posthouse.server.services.accounts import DEFAULT_STREAMS
from posthouse.server.store import base
from posthouse.server.store.base import MessageFilter, Store

T0 = 1_800_000_000_000_000
SCAN, WALK = 25, 10  # the walks' bounds, made small so that a few dozen messages cross them


@pytest.fixture
async def server(store: Store, monkeypatch: pytest.MonkeyPatch) -> int:
    """60 messages, one a second, oldest first: every third tagged "billing"; subjects "Order n" except two
    old "Rare" ones (one tagged); each a distinct time, so that newest-first has one order."""
    monkeypatch.setattr(base, "_SUBJECT_SCAN", SCAN)
    monkeypatch.setattr(base, "_SUBJECT_WALK", WALK)
    server_id = await store.create_server("s", {}, "hash", "hint", T0, DEFAULT_STREAMS)
    for i in range(60):
        subject = "Rare receipt" if i in (2, 3) else f"Order {i}"
        request = wire.EmailRequest(sender="app@example.com", to=f"u{i}@example.com", subject=subject,
                                    text_body="x", tag="billing" if i % 3 == 0 else "other")
        now = T0 + i * 1_000_000
        await store.insert_messages(server_id, [compose(request, now=datetime.fromtimestamp(now / 1e6, UTC))],
                                    sandboxed=False, now=now)
    return server_id


def subjects(records: list[base.MessageRecord]) -> list[str]:
    return [r.subject for r in records]


async def by_index(store: Store, server_id: int, f: MessageFilter, offset: int, count: int) -> list[str]:
    _, records = await store.search_messages(server_id, f, offset, count)
    return subjects(records)


@pytest.mark.parametrize(("f", "offset", "count"), [
    (MessageFilter(subject="order"), 0, 5),  # common: found among the newest 10 of the 60
    (MessageFilter(subject="ORDER 5"), 0, 6),  # case-insensitive: "Order 5", "Order 50".."Order 59"
    (MessageFilter(subject="order", tag="billing"), 2, 3),  # 20 tagged: every one tested
    (MessageFilter(subject="order", tag="billing"), 15, 5),  # deeper than the walk of the newest, not of all
    (MessageFilter(subject="order", tag="billing", status="Queued", now=T0 + 10**12), 0, 6),
    (MessageFilter(subject="Order 1", tag="billing"), 0, 5),  # old matches only (12, 15, 18), all tested
])
async def test_a_page_found_by_walking_is_the_page_the_index_finds(
        store: Store, server: int, f: MessageFilter, offset: int, count: int) -> None:
    walked = await store._page_by_recent_subjects(server, f, offset, count)
    assert walked is not None, "the walk answered"
    assert subjects(walked) == await by_index(store, server, f, offset, count)
    assert subjects(await store.page_messages(server, f, offset, count)) == subjects(walked)
    assert walked, "the page holds something"


async def test_matches_older_than_the_walk_are_found_through_the_index(store: Store, server: int) -> None:
    f = MessageFilter(subject="rare")
    assert await store._page_by_recent_subjects(server, f, 0, 5) is None  # the newest 10 walked, none matched
    page = await store.page_messages(server, f, 0, 5)
    assert subjects(page) == ["Rare receipt", "Rare receipt"] == await by_index(store, server, f, 0, 5)


async def test_a_walk_that_reaches_the_end_of_the_other_filters_is_complete(store: Store, server: int) -> None:
    """20 messages are tagged billing: the walk tests them all, so its short answer is the whole answer."""
    f = MessageFilter(subject="receipt", tag="billing")
    walked = await store._page_by_recent_subjects(server, f, 0, 5)
    assert walked is not None and subjects(walked) == ["Rare receipt"] == await by_index(store, server, f, 0, 5)
    nothing = MessageFilter(subject="nowhere", tag="billing")
    assert await store._page_by_recent_subjects(server, nothing, 0, 5) == []


async def test_a_page_deeper_than_the_walk_goes_to_the_index(store: Store, server: int) -> None:
    f = MessageFilter(subject="order")
    assert subjects(await store.page_messages(server, f, 30, 5)) == await by_index(store, server, f, 30, 5)
