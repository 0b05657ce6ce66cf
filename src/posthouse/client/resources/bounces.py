"""Bounces of a server: delivery stats, search, one bounce, its raw source, reactivation (docs/postmark-api.md §5)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from typing import TypedDict, Unpack, cast

from posthouse import wire
from posthouse.client.protocol import Call, format_instant, json_decoder, path_segment
from posthouse.client.resources.base import MAX_PAGE_SIZE, AsyncResource, SyncResource, pages, pages_async

__all__ = [
    "AsyncBounces",
    "BounceSearch",
    "SyncBounces",
    "activate_call",
    "delivery_stats_call",
    "dump_call",
    "get_call",
    "list_call",
    "tags_call",
]

_STATS = json_decoder(wire.DeliveryStats)
_LIST = json_decoder(wire.BounceList)
_BOUNCE = json_decoder(wire.Bounce)
_DUMP = json_decoder(wire.Dump)
_ACTIVATION = json_decoder(wire.BounceActivation)
_Tags = list[str]  # names the classes can use: their `list` method shadows the builtin
_Bounces = list[wire.Bounce]
_TAGS = json_decoder(_Tags)


class BounceSearch(TypedDict, total=False):
    """The filters of `bounces.list` (docs/postmark-api.md §5), all optional."""

    count: int  # page size, at most 500; 100 when not given
    offset: int  # count + offset at most 10 000; 0 when not given
    type: str  # a bounce type: HardBounce, SoftBounce, SpamComplaint, ...
    inactive: bool  # True: only bounces that deactivated their address; False: only the others
    email_filter: str  # part of the bounced address
    tag: str
    message_id: str
    message_stream: str  # every stream when not given
    from_date: datetime | date | str  # inclusive; a naive time is UTC
    to_date: datetime | date | str


def delivery_stats_call() -> Call[wire.DeliveryStats]:
    return Call("GET", "/deliverystats", _STATS)


def list_call(**search: Unpack[BounceSearch]) -> Call[wire.BounceList]:
    params = {"count": str(search.get("count", 100)), "offset": str(search.get("offset", 0))}
    texts = {
        "type": search.get("type"),
        "emailfilter": search.get("email_filter"),
        "tag": search.get("tag"),
        "messageid": search.get("message_id"),
        "messagestream": search.get("message_stream"),
    }
    params.update({name: value for name, value in texts.items() if value is not None})
    inactive = search.get("inactive")
    if inactive is not None:
        params["inactive"] = "true" if inactive else "false"
    for name, moment in (("fromdate", search.get("from_date")), ("todate", search.get("to_date"))):
        if moment is not None:
            params[name] = format_instant(moment)
    return Call("GET", "/bounces", _LIST, params=params)


def tags_call() -> Call[_Tags]:
    return Call("GET", "/bounces/tags", _TAGS)


def get_call(bounce_id: int) -> Call[wire.Bounce]:
    return Call("GET", f"/bounces/{path_segment(bounce_id)}", _BOUNCE)


def dump_call(bounce_id: int) -> Call[str]:
    return Call("GET", f"/bounces/{path_segment(bounce_id)}/dump", lambda content: _DUMP(content).body)


def activate_call(bounce_id: int) -> Call[wire.BounceActivation]:
    # Activating an active address leaves it active: replayable.
    return Call("PUT", f"/bounces/{path_segment(bounce_id)}/activate", _ACTIVATION)


class AsyncBounces(AsyncResource):
    """`client.bounces` of the async `ServerClient`."""

    async def delivery_stats(self) -> wire.DeliveryStats:
        """How many addresses are inactive, and the bounces by type (an "All" row first)."""
        return await self._http.run(delivery_stats_call())

    async def list(self, **search: Unpack[BounceSearch]) -> wire.BounceList:
        """One page of bounces, newest first, with the total that match."""
        return await self._http.run(list_call(**search))

    async def iterate(self, *, page_size: int = MAX_PAGE_SIZE, **search: Unpack[BounceSearch]
                      ) -> AsyncIterator[wire.Bounce]:
        """Every bounce matching `search` (its `count` is ignored), newest first, `page_size` a request.
        Stops at the search window (10,000 from the first): narrow `from_date`/`to_date` to reach further."""
        async def fetch(count: int, offset: int) -> tuple[int, _Bounces]:
            page = await self.list(**cast(BounceSearch, {**search, "count": count, "offset": offset}))
            return page.total_count, page.bounces

        async for bounce in pages_async(fetch, lambda b: b.id, offset=search.get("offset", 0), page_size=page_size):
            yield bounce

    async def tags(self) -> _Tags:
        """Every tag that some bounce of the server carries, in order."""
        return await self._http.run(tags_call())

    async def get(self, bounce_id: int) -> wire.Bounce:
        """One bounce, with its raw source in `content`."""
        return await self._http.run(get_call(bounce_id))

    async def dump(self, bounce_id: int) -> str:
        """The bounce's raw source as received ("" when it is not kept)."""
        return await self._http.run(dump_call(bounce_id))

    async def activate(self, bounce_id: int) -> wire.BounceActivation:
        """Reactivate the bounced address (lift its suppression) when the bounce's `can_activate` allows it."""
        return await self._http.run(activate_call(bounce_id))


class SyncBounces(SyncResource):
    """`client.bounces` of the sync `ServerClient`."""

    def delivery_stats(self) -> wire.DeliveryStats:
        """How many addresses are inactive, and the bounces by type (an "All" row first)."""
        return self._http.run(delivery_stats_call())

    def list(self, **search: Unpack[BounceSearch]) -> wire.BounceList:
        """One page of bounces, newest first, with the total that match."""
        return self._http.run(list_call(**search))

    def iterate(self, *, page_size: int = MAX_PAGE_SIZE, **search: Unpack[BounceSearch]) -> Iterator[wire.Bounce]:
        """Every bounce matching `search` (its `count` is ignored), newest first, `page_size` a request.
        Stops at the search window (10,000 from the first): narrow `from_date`/`to_date` to reach further."""
        def fetch(count: int, offset: int) -> tuple[int, _Bounces]:
            page = self.list(**cast(BounceSearch, {**search, "count": count, "offset": offset}))
            return page.total_count, page.bounces

        return pages(fetch, lambda b: b.id, offset=search.get("offset", 0), page_size=page_size)

    def tags(self) -> _Tags:
        """Every tag that some bounce of the server carries, in order."""
        return self._http.run(tags_call())

    def get(self, bounce_id: int) -> wire.Bounce:
        """One bounce, with its raw source in `content`."""
        return self._http.run(get_call(bounce_id))

    def dump(self, bounce_id: int) -> str:
        """The bounce's raw source as received ("" when it is not kept)."""
        return self._http.run(dump_call(bounce_id))

    def activate(self, bounce_id: int) -> wire.BounceActivation:
        """Reactivate the bounced address (lift its suppression) when the bounce's `can_activate` allows it."""
        return self._http.run(activate_call(bounce_id))
