"""Paging through a search: `outbound.iterate` and `bounces.iterate` against the real server, and the page
planner on its own (the search window, items that shift while it pages)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import posthouse
from posthouse.client.resources.base import SEARCH_WINDOW, pages
from sdk.sdk_support import Tenant
from support import async_wait_for

SENDER = "app@example.com"


async def collect(flavour, iterable) -> list:  # type: ignore[no-untyped-def]
    if flavour.is_async:
        return [item async for item in iterable]
    return list(iterable)


async def test_outbound_iterate_walks_every_page_newest_first(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        emails = [posthouse.Email(sender=SENDER, to=f"r{i}@example.com", subject=f"m{i}", text_body="x",
                                  tag="paged" if i % 2 else "other") for i in range(23)]
        sent = await flavour(client.outbound.send_batch(emails))
        assert all(r.error_code == 0 for r in sent)
        walked = await collect(flavour, client.outbound.iterate(page_size=5))
        assert sorted(m.message_id for m in walked) == sorted(r.message_id for r in sent)
        assert [m.received_at for m in walked] == sorted((m.received_at for m in walked), reverse=True)
        tagged = await collect(flavour, client.outbound.iterate(page_size=4, tag="paged"))
        assert sorted(m.subject for m in tagged) == sorted(f"m{i}" for i in range(23) if i % 2)
        assert len(await collect(flavour, client.outbound.iterate(offset=20))) == 3
        with pytest.raises(ValueError, match="page_size"):
            await collect(flavour, client.outbound.iterate(page_size=501))
    finally:
        await flavour.close(client)


async def test_bounces_iterate(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        bounce = [posthouse.Header(name="X-PM-Bounce-Type", value="HardBounce")]
        emails = [posthouse.Email(sender=SENDER, to=f"gone{i}@example.com", subject="b", text_body="x", headers=bounce)
                  for i in range(7)]
        assert all(r.error_code == 0 for r in await flavour(client.outbound.send_batch(emails)))

        async def bounced() -> bool:
            return bool((await flavour(client.bounces.list())).total_count >= 7)

        await async_wait_for(bounced, timeout=15)
        walked = await collect(flavour, client.bounces.iterate(page_size=3))
        assert len({b.id for b in walked}) == 7 == len(walked)
    finally:
        await flavour.close(client)


def fake_search(items: list[int], calls: list[tuple[int, int]], arrivals: dict[int, list[int]] | None = None):  # type: ignore[no-untyped-def]
    """A newest-first search over `items`; `arrivals` adds new items at the front before the call numbered."""
    def fetch(count: int, offset: int) -> tuple[int, Sequence[int]]:
        for new in (arrivals or {}).get(len(calls), []):
            items.insert(0, new)
        calls.append((count, offset))
        return len(items), items[offset:offset + count]
    return fetch


def test_pages_stop_at_the_search_window_and_never_ask_past_it() -> None:
    calls: list[tuple[int, int]] = []
    walked = list(pages(fake_search(list(range(12_345)), calls), lambda i: i, offset=9_000, page_size=400))
    assert walked == list(range(9_000, SEARCH_WINDOW))
    assert calls[-1] == (200, 9_800)
    assert all(count + offset <= SEARCH_WINDOW for count, offset in calls)


def test_an_item_pushed_onto_the_next_page_by_a_new_arrival_is_given_once() -> None:
    calls: list[tuple[int, int]] = []
    items = list(range(100, 90, -1))  # 100 … 91, newest first
    walked = list(pages(fake_search(items, calls, arrivals={1: [101]}), lambda i: i, offset=0, page_size=4))
    assert walked == list(range(100, 90, -1))  # 97 came back on page two (pushed by 101): given once
    assert len(calls) == 3
