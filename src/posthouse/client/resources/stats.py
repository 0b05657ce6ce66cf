"""Statistics of a server's outbound mail: the overview and every breakdown of `/stats/outbound`
(docs/postmark-api.md §6). Days are UTC days; every call takes `tag`, `from_date`, `to_date` (inclusive)
and `message_stream` (every stream when not given).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypedDict, TypeVar, Unpack

import msgspec

from posthouse import wire
from posthouse.client.protocol import Call, format_instant, json_decoder
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = ["AsyncStats", "StatsFilters", "SyncStats", "stats_call"]

T = TypeVar("T")
_USAGE = msgspec.json.Decoder(dict[str, Any])


class StatsFilters(TypedDict, total=False):
    """The filters of every stats call, all optional."""

    tag: str
    from_date: datetime | date | str  # the first day counted
    to_date: datetime | date | str  # the last day counted
    message_stream: str


def _usage(content: bytes) -> wire.UsageCounts:
    return wire.usage_from_json(_USAGE.decode(content))


def stats_call(path: str, decode: Callable[[bytes], T], **filters: Unpack[StatsFilters]) -> Call[T]:
    params: dict[str, str] = {}
    tag, stream = filters.get("tag"), filters.get("message_stream")
    if tag is not None:
        params["tag"] = tag
    if stream is not None:
        params["messagestream"] = stream
    for name, moment in (("fromdate", filters.get("from_date")), ("todate", filters.get("to_date"))):
        if moment is not None:
            # Stats count whole days: a datetime stands for its date.
            params[name] = format_instant(moment.date() if isinstance(moment, datetime) else moment)
    return Call("GET", "/stats/outbound" + (f"/{path}" if path else ""), decode, params=params)


_OVERVIEW = json_decoder(wire.OutboundOverview)
_SENDS = json_decoder(wire.SentCounts)
_BOUNCES = json_decoder(wire.BounceCounts)
_SPAM = json_decoder(wire.SpamCounts)
_TRACKED = json_decoder(wire.TrackedCounts)
_OPENS = json_decoder(wire.OpenCounts)
_PLATFORMS = json_decoder(wire.PlatformCounts)
_CLICKS = json_decoder(wire.ClickCounts)
_CLICK_PLATFORMS = json_decoder(wire.ClickPlatformCounts)
_LOCATIONS = json_decoder(wire.ClickLocationCounts)


class AsyncStats(AsyncResource):
    """`client.stats` of the async `ServerClient`."""

    async def overview(self, **filters: Unpack[StatsFilters]) -> wire.OutboundOverview:
        """Totals: sent, bounced, spam complaints (and their rates in percent of sent), tracking, opens, clicks."""
        return await self._http.run(stats_call("", _OVERVIEW, **filters))

    async def sends(self, **filters: Unpack[StatsFilters]) -> wire.SentCounts:
        """Recipients accepted for sending, per day."""
        return await self._http.run(stats_call("sends", _SENDS, **filters))

    async def bounces(self, **filters: Unpack[StatsFilters]) -> wire.BounceCounts:
        """Hard and soft bounces, delays (transient) and SMTP API errors, per day."""
        return await self._http.run(stats_call("bounces", _BOUNCES, **filters))

    async def spam(self, **filters: Unpack[StatsFilters]) -> wire.SpamCounts:
        """Spam complaints per day."""
        return await self._http.run(stats_call("spam", _SPAM, **filters))

    async def tracked(self, **filters: Unpack[StatsFilters]) -> wire.TrackedCounts:
        """Recipients sent with open or link tracking, per day."""
        return await self._http.run(stats_call("tracked", _TRACKED, **filters))

    async def opens(self, **filters: Unpack[StatsFilters]) -> wire.OpenCounts:
        """Opens and unique opens per day."""
        return await self._http.run(stats_call("opens", _OPENS, **filters))

    async def open_platforms(self, **filters: Unpack[StatsFilters]) -> wire.PlatformCounts:
        """Opens on desktop, mobile, webmail and unknown platforms, per day."""
        return await self._http.run(stats_call("opens/platforms", _PLATFORMS, **filters))

    async def email_clients(self, **filters: Unpack[StatsFilters]) -> wire.UsageCounts:
        """Opens per email client (`totals` and each day's `counts` by client name)."""
        return await self._http.run(stats_call("opens/emailclients", _usage, **filters))

    async def read_times(self, **filters: Unpack[StatsFilters]) -> wire.UsageCounts:
        """Opens per read time, keyed by the read-time bucket."""
        return await self._http.run(stats_call("opens/readtimes", _usage, **filters))

    async def clicks(self, **filters: Unpack[StatsFilters]) -> wire.ClickCounts:
        """Clicks and unique clicks per day."""
        return await self._http.run(stats_call("clicks", _CLICKS, **filters))

    async def browser_families(self, **filters: Unpack[StatsFilters]) -> wire.UsageCounts:
        """Clicks per browser family."""
        return await self._http.run(stats_call("clicks/browserfamilies", _usage, **filters))

    async def click_platforms(self, **filters: Unpack[StatsFilters]) -> wire.ClickPlatformCounts:
        """Clicks on desktop, mobile and unknown platforms, per day."""
        return await self._http.run(stats_call("clicks/platforms", _CLICK_PLATFORMS, **filters))

    async def click_locations(self, **filters: Unpack[StatsFilters]) -> wire.ClickLocationCounts:
        """Clicks on links of the HTML part and of the text part, per day."""
        return await self._http.run(stats_call("clicks/location", _LOCATIONS, **filters))


class SyncStats(SyncResource):
    """`client.stats` of the sync `ServerClient`."""

    def overview(self, **filters: Unpack[StatsFilters]) -> wire.OutboundOverview:
        """Totals: sent, bounced, spam complaints (and their rates in percent of sent), tracking, opens, clicks."""
        return self._http.run(stats_call("", _OVERVIEW, **filters))

    def sends(self, **filters: Unpack[StatsFilters]) -> wire.SentCounts:
        """Recipients accepted for sending, per day."""
        return self._http.run(stats_call("sends", _SENDS, **filters))

    def bounces(self, **filters: Unpack[StatsFilters]) -> wire.BounceCounts:
        """Hard and soft bounces, delays (transient) and SMTP API errors, per day."""
        return self._http.run(stats_call("bounces", _BOUNCES, **filters))

    def spam(self, **filters: Unpack[StatsFilters]) -> wire.SpamCounts:
        """Spam complaints per day."""
        return self._http.run(stats_call("spam", _SPAM, **filters))

    def tracked(self, **filters: Unpack[StatsFilters]) -> wire.TrackedCounts:
        """Recipients sent with open or link tracking, per day."""
        return self._http.run(stats_call("tracked", _TRACKED, **filters))

    def opens(self, **filters: Unpack[StatsFilters]) -> wire.OpenCounts:
        """Opens and unique opens per day."""
        return self._http.run(stats_call("opens", _OPENS, **filters))

    def open_platforms(self, **filters: Unpack[StatsFilters]) -> wire.PlatformCounts:
        """Opens on desktop, mobile, webmail and unknown platforms, per day."""
        return self._http.run(stats_call("opens/platforms", _PLATFORMS, **filters))

    def email_clients(self, **filters: Unpack[StatsFilters]) -> wire.UsageCounts:
        """Opens per email client (`totals` and each day's `counts` by client name)."""
        return self._http.run(stats_call("opens/emailclients", _usage, **filters))

    def read_times(self, **filters: Unpack[StatsFilters]) -> wire.UsageCounts:
        """Opens per read time, keyed by the read-time bucket."""
        return self._http.run(stats_call("opens/readtimes", _usage, **filters))

    def clicks(self, **filters: Unpack[StatsFilters]) -> wire.ClickCounts:
        """Clicks and unique clicks per day."""
        return self._http.run(stats_call("clicks", _CLICKS, **filters))

    def browser_families(self, **filters: Unpack[StatsFilters]) -> wire.UsageCounts:
        """Clicks per browser family."""
        return self._http.run(stats_call("clicks/browserfamilies", _usage, **filters))

    def click_platforms(self, **filters: Unpack[StatsFilters]) -> wire.ClickPlatformCounts:
        """Clicks on desktop, mobile and unknown platforms, per day."""
        return self._http.run(stats_call("clicks/platforms", _CLICK_PLATFORMS, **filters))

    def click_locations(self, **filters: Unpack[StatsFilters]) -> wire.ClickLocationCounts:
        """Clicks on links of the HTML part and of the text part, per day."""
        return self._http.run(stats_call("clicks/location", _LOCATIONS, **filters))
