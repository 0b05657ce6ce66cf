"""Stats and engagement: Postmark's `/stats/outbound` answers from the rollup counters, and the Opens and
Clicks searches from the recorded hits (docs/postmark-api.md §4.5, §6).

Days are UTC days (Postmark's are US Eastern: a documented difference). A series lists the days that
have any of its counts, each with every fixed key of the series (zeros written out), and always has
`Days`, as the official clients require (§6 compat note).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from posthouse import wire
from posthouse.server.domain.stats import BOUNCED_TYPES, Family, Metric, bounce_metric, family_metric
from posthouse.server.domain.statuses import BounceType
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.clock import iso
from posthouse.server.services.history import check_paging, parse_time_filter
from posthouse.server.store.base import Store
from posthouse.server.store.hits import HitFilter, HitKind, StoredHit
from posthouse.server.store.stats import StatsFilter
from posthouse.server.webhooks.payloads import ClickLocation, Platform

# Postmark lists 900 among its Stats error codes without saying what it means [unverified]; Posthouse
# answers it for a stats query it cannot read (a date that is no date).
STATS_QUERY_ERROR = 900
MESSAGES_QUERY_ERROR = 700  # the Opens and Clicks searches are Messages endpoints
_EPOCH = date(1970, 1, 1)
# postmark.js's own tests write dates without zero padding ("2026-1-5"); Postmark reads them.
_LOOSE_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?=$|[T ])")


def _padded(value: str) -> str:
    found = _LOOSE_DATE.match(value.strip())
    if found is None:
        return value.strip()
    year, month, day = found.groups()
    return f"{year}-{int(month):02d}-{int(day):02d}{value.strip()[found.end():]}"


def parse_stats_day(value: str | None) -> int | None:
    """`fromdate`/`todate` of a stats query → a UTC day number; a date and time counts as its date."""
    if not value:
        return None
    text = _padded(value)
    try:
        day = date.fromisoformat(text[:10])
        if len(text) > 10:
            datetime.fromisoformat(text)  # the rest must be a time of that date
        return (day - _EPOCH).days
    except ValueError:
        raise ApiError(STATS_QUERY_ERROR, f"Invalid date: '{value}'. Use YYYY-MM-DD.") from None


def parse_hit_time(value: str | None, *, end: bool) -> int | None:
    """`fromdate`/`todate` of an Opens or Clicks search → µs (a bare date as an end bound: its last moment)."""
    return parse_time_filter(_padded(value) if value else None, end=end, error_code=MESSAGES_QUERY_ERROR)


def _date(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).isoformat()


@dataclass(frozen=True, slots=True)
class Series:
    """One `/stats/outbound/…` breakdown: the day and total Structs and which counter fills each field,
    or (for the breakdowns keyed by names) the family whose counters are its keys."""

    day: type[Any] | None = None
    total: type[Any] | None = None
    fields: Mapping[str, str] = field(default_factory=dict)  # wire field → metric
    family: Family | None = None


_PLATFORM_FIELDS = {Platform.DESKTOP: "desktop", Platform.MOBILE: "mobile", Platform.UNKNOWN: "unknown",
                    Platform.WEBMAIL: "web_mail"}


def _platforms(family: Family, *platforms: Platform) -> dict[str, str]:
    return {_PLATFORM_FIELDS[p]: family_metric(family, p.value) for p in platforms}


# Keyed by the path after /stats/outbound/, lower-cased (the router matches paths ignoring case).
SERIES: dict[str, Series] = {
    "sends": Series(wire.SentDay, wire.SentCounts, {"sent": Metric.SENT.value}),
    "bounces": Series(wire.BounceDay, wire.BounceCounts, {
        "hard_bounce": bounce_metric(BounceType.HARD_BOUNCE.type_name),
        "smtp_api_error": bounce_metric(BounceType.SMTP_API_ERROR.type_name),
        "soft_bounce": bounce_metric(BounceType.SOFT_BOUNCE.type_name),
        "transient": bounce_metric(BounceType.TRANSIENT.type_name),
    }),
    "spam": Series(wire.SpamDay, wire.SpamCounts, {"spam_complaint": Metric.SPAM_COMPLAINTS.value}),
    "tracked": Series(wire.TrackedDay, wire.TrackedCounts, {"tracked": Metric.TRACKED.value}),
    "opens": Series(wire.OpenDay, wire.OpenCounts, {"opens": Metric.OPENS.value, "unique": Metric.UNIQUE_OPENS.value}),
    "opens/platforms": Series(wire.PlatformDay, wire.PlatformCounts, _platforms(
        Family.OPEN_PLATFORM, Platform.DESKTOP, Platform.MOBILE, Platform.UNKNOWN, Platform.WEBMAIL)),
    "opens/emailclients": Series(family=Family.OPEN_CLIENT),
    "opens/readtimes": Series(family=Family.OPEN_READ_TIME),
    "clicks": Series(wire.ClickDay, wire.ClickCounts, {"clicks": Metric.CLICKS.value,
                                                       "unique": Metric.UNIQUE_CLICKS.value}),
    "clicks/browserfamilies": Series(family=Family.CLICK_BROWSER),
    # Links are followed in a browser, so a click's platform is Desktop, Mobile or Unknown (Postmark's keys).
    "clicks/platforms": Series(wire.ClickPlatformDay, wire.ClickPlatformCounts, _platforms(
        Family.CLICK_PLATFORM, Platform.DESKTOP, Platform.MOBILE, Platform.UNKNOWN)),
    "clicks/location": Series(wire.ClickLocationDay, wire.ClickLocationCounts, {
        "html": family_metric(Family.CLICK_LOCATION, ClickLocation.HTML.value),
        "text": family_metric(Family.CLICK_LOCATION, ClickLocation.TEXT.value),
    }),
}

# The overview's fields that are one counter each.
_OVERVIEW = {
    "sent": Metric.SENT, "smtp_api_errors": Metric.SMTP_API_ERRORS, "spam_complaints": Metric.SPAM_COMPLAINTS,
    "opens": Metric.OPENS, "unique_opens": Metric.UNIQUE_OPENS, "tracked": Metric.TRACKED,
    "with_link_tracking": Metric.WITH_LINK_TRACKING, "with_open_tracking": Metric.WITH_OPEN_TRACKING,
    "total_tracked_links_sent": Metric.TRACKED_LINKS_SENT, "unique_links_clicked": Metric.UNIQUE_LINKS_CLICKED,
    "total_clicks": Metric.CLICKS, "with_client_recorded": Metric.WITH_CLIENT_RECORDED,
    "with_platform_recorded": Metric.WITH_PLATFORM_RECORDED, "with_read_time_recorded": Metric.WITH_READ_TIME_RECORDED,
}
_BOUNCED = frozenset(family_metric(Family.BOUNCES, t) for t in BOUNCED_TYPES)


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 3) if whole else 0.0


def _agent(name: str | None, company: str | None, family: str | None) -> wire.AgentDetails:
    return wire.AgentDetails(name=name, company=company, family=family)


def _geo(hit: StoredHit) -> wire.Geo:
    return wire.Geo(country_iso_code=hit.country_iso, country=hit.country, region_iso_code=hit.region_iso,
                    region=hit.region, city=hit.city, zip=hit.zip, coords=hit.coords, ip=hit.ip)


def open_event(hit: StoredHit) -> wire.OpenEvent:
    return wire.OpenEvent(
        first_open=hit.first, client=_agent(hit.client_name, hit.client_company, hit.client_family),
        os=_agent(hit.os_name, hit.os_company, hit.os_family), platform=hit.platform, user_agent=hit.user_agent,
        read_seconds=0,  # no read time is measured (tracking_hits has no read time)
        geo=_geo(hit), message_id=hit.message_id, message_stream=hit.stream, received_at=iso(hit.occurred_at) or "",
        tag=hit.tag, recipient=hit.recipient)


def click_event(hit: StoredHit) -> wire.ClickEvent:
    return wire.ClickEvent(
        click_location=hit.click_location or ClickLocation.HTML.value,
        client=_agent(hit.client_name, hit.client_company, hit.client_family),
        os=_agent(hit.os_name, hit.os_company, hit.os_family), platform=hit.platform, user_agent=hit.user_agent,
        original_link=hit.url or "", geo=_geo(hit), message_id=hit.message_id, message_stream=hit.stream,
        received_at=iso(hit.occurred_at) or "", tag=hit.tag, recipient=hit.recipient)


class StatsService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def overview(self, server_id: int, f: StatsFilter) -> wire.OutboundOverview:
        """Totals over the range: the counters, `Bounced` (bounces that mean the message did not arrive,
        `domain.stats.BOUNCED_TYPES`) and the two rates, in percent of `Sent`."""
        rows = await self.store.read_stats(server_id, f, metrics=[m.value for m in _OVERVIEW.values()],
                                           families=[Family.BOUNCES], by_day=False)
        counts = {metric: value for _, metric, value in rows}
        values = {name: counts.get(metric.value, 0) for name, metric in _OVERVIEW.items()}
        bounced = sum(value for metric, value in counts.items() if metric in _BOUNCED)
        return wire.OutboundOverview(
            bounced=bounced, bounce_rate=_percent(bounced, values["sent"]),
            spam_complaints_rate=_percent(values["spam_complaints"], values["sent"]), **values)

    async def series(self, server_id: int, name: str, f: StatsFilter) -> Any:
        """The breakdown `name` (a key of `SERIES`): its Struct, or for name-keyed breakdowns a
        `wire.UsageCounts`."""
        spec = SERIES[name]
        if spec.family is not None:
            return await self._usage(server_id, spec.family, f)
        assert spec.day is not None and spec.total is not None
        rows = await self.store.read_stats(server_id, f, metrics=sorted(set(spec.fields.values())), by_day=True)
        per_day: dict[int, dict[str, int]] = {}
        for day, metric, value in rows:
            assert day is not None
            per_day.setdefault(day, {})[metric] = value
        days = [spec.day(date=_date(day), **{name: counts.get(metric, 0) for name, metric in spec.fields.items()})
                for day, counts in sorted(per_day.items())]
        totals = {name: sum(counts.get(metric, 0) for counts in per_day.values())
                  for name, metric in spec.fields.items()}
        return spec.total(days=days, **totals)

    async def _usage(self, server_id: int, family: Family, f: StatsFilter) -> wire.UsageCounts:
        rows = await self.store.read_stats(server_id, f, families=[family], by_day=True)
        prefix = len(family.value) + 1
        per_day: dict[int, dict[str, int]] = {}
        totals: dict[str, int] = {}
        for day, metric, value in rows:
            assert day is not None
            key = metric[prefix:]
            per_day.setdefault(day, {})[key] = value
            totals[key] = totals.get(key, 0) + value
        return wire.UsageCounts(days=[wire.UsageDay(date=_date(day), counts=dict(sorted(counts.items())))
                                      for day, counts in sorted(per_day.items())],
                                totals=dict(sorted(totals.items())))

    # -- opens and clicks (docs/postmark-api.md §4.5) ----------------------------------------------

    async def opens(self, server_id: int, f: HitFilter, count: int, offset: int) -> wire.OpenList:
        total, hits = await self.store.search_hits(server_id, HitKind.OPEN, f, offset, count)
        return wire.OpenList(total_count=total, opens=[open_event(h) for h in hits])

    async def clicks(self, server_id: int, f: HitFilter, count: int, offset: int) -> wire.ClickList:
        total, hits = await self.store.search_hits(server_id, HitKind.CLICK, f, offset, count)
        return wire.ClickList(total_count=total, clicks=[click_event(h) for h in hits])

    async def message_opens(self, server_id: int, message_id: str, count: int, offset: int) -> wire.OpenList:
        total, hits = await self._message_hits(server_id, message_id, HitKind.OPEN, count, offset)
        return wire.OpenList(total_count=total, opens=[open_event(h) for h in hits])

    async def message_clicks(self, server_id: int, message_id: str, count: int, offset: int) -> wire.ClickList:
        total, hits = await self._message_hits(server_id, message_id, HitKind.CLICK, count, offset)
        return wire.ClickList(total_count=total, clicks=[click_event(h) for h in hits])

    async def _message_hits(self, server_id: int, message_id: str, kind: HitKind, count: int, offset: int
                            ) -> tuple[int, list[StoredHit]]:
        wanted = message_id.strip().lower()
        if await self.store.get_message(server_id, wanted) is None:
            raise NotFoundError(701, f"The message '{message_id}' was not found.")
        return await self.store.message_hits(server_id, wanted, kind, offset, count)


    async def days(self, server_id: int, f: StatsFilter) -> list[DayTotals]:
        """Every day of the filter's range (it must have both ends), oldest first, zeros written out: the
        dashboard's charts (issue 15). Two indexed reads of the rollups, whatever the number of messages."""
        assert f.from_day is not None and f.to_day is not None
        rows = await self.store.read_stats(server_id, f, metrics=sorted(_DAY_METRICS), families=[Family.BOUNCES],
                                           by_day=True)
        counts: dict[int, dict[str, int]] = {}
        for day, metric, value in rows:
            assert day is not None
            into = counts.setdefault(day, {})
            if metric in _BOUNCED:
                into["bounced"] = into.get("bounced", 0) + value
            elif metric in _DAY_METRICS:
                into[_DAY_METRICS[metric]] = value
        return [DayTotals(date=_date(day), **counts.get(day, {})) for day in range(f.from_day, f.to_day + 1)]


def paging(count: int | None, offset: int | None) -> tuple[int, int]:
    """Postmark's paging rules for the Opens and Clicks searches (those of the message search)."""
    return check_paging(count, offset, MESSAGES_QUERY_ERROR)


# -- the dashboard's statistics page (issue 15) ----------------------------------------------------

MAX_RANGE_DAYS = 366  # the longest range the dashboard charts, a day a bar


@dataclass(frozen=True, slots=True)
class DayTotals:
    """One UTC day of a server's outbound counters, as the dashboard charts them. `bounced` counts what the
    overview's `Bounced` counts (`domain.stats.BOUNCED_TYPES`), so a day's rates add up to the range's."""

    date: str  # YYYY-MM-DD
    sent: int = 0
    bounced: int = 0
    spam_complaints: int = 0
    opens: int = 0
    unique_opens: int = 0
    clicks: int = 0
    unique_clicks: int = 0

    @property
    def delivery_rate(self) -> float | None:
        """Percent of the day's sends that did not bounce; None on a day without sends."""
        return round(100.0 - _percent(self.bounced, self.sent), 3) if self.sent else None


_DAY_METRICS = {Metric.SENT.value: "sent", Metric.SPAM_COMPLAINTS.value: "spam_complaints",
                Metric.OPENS.value: "opens", Metric.UNIQUE_OPENS.value: "unique_opens", Metric.CLICKS.value: "clicks",
                Metric.UNIQUE_CLICKS.value: "unique_clicks"}


def stats_range(from_date: str | None, to_date: str | None, *, today: date, default_days: int = 30
                ) -> tuple[date, date]:
    """The inclusive range of UTC days a stats page shows: the dates given (`fromdate`/`todate` as the API
    reads them), else the `default_days` ending today. ApiError (900) for a date that is no date, a range that
    ends before it starts, or one longer than `MAX_RANGE_DAYS`."""
    end_day = parse_stats_day(to_date)
    end = _EPOCH + timedelta(days=end_day) if end_day is not None else today
    start_day = parse_stats_day(from_date)
    start = _EPOCH + timedelta(days=start_day) if start_day is not None else end - timedelta(days=default_days - 1)
    if start > end:
        raise ApiError(STATS_QUERY_ERROR, f"The range ends ({end.isoformat()}) before it starts ({start.isoformat()}).")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ApiError(STATS_QUERY_ERROR, f"Choose a range of at most {MAX_RANGE_DAYS} days.")
    return start, end


def stats_filter(start: date, end: date, *, stream: str | None = None, tag: str | None = None) -> StatsFilter:
    """The counters of days `start`..`end` (inclusive), of one stream (None: every stream) and tag (None: every
    tag), as `/stats/outbound?fromdate=…&todate=…&messagestream=…&tag=…` reads them."""
    return StatsFilter(from_day=(start - _EPOCH).days, to_day=(end - _EPOCH).days, stream=stream, tag=tag)

