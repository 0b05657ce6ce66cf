"""Opens and clicks: the tracking listener's request path, and what a batch of recorded hits writes.

The request path (`record_open`, `follow_click`) checks the token's signature, answers from memory where
it can, and puts the hit on a bounded in-process queue; it never writes to the database. When the
queue is full it waits (back-pressure), so a burst slows the answers down instead of losing hits.
`workers/tracking.TrackingRecorder` takes hits off the queue in batches and calls `record_batch`, one
transaction per batch (docs/architecture.md §5).

What a batch records, and why (Postmark's behaviour, docs/postmark-api.md §4.4, §4.5, §7.3):

- every hit, as a `tracking_hits` row with its `first` flag (the recipient's first open; for a click,
  the recipient's first click of that link) and Client/OS/Platform/Geo;
- a timeline event for the first open of each recipient (`Opened`, Summary "Email opened with <user
  agent>") and the first click of each link (`LinkClicked` with Summary, Link, ClickLocation), because
  Postmark keeps only those: "if a recipient opens an email multiple times, Postmark will only save the
  first open";
- an `Open` webhook post for every open, `FirstOpen` telling the first, except to webhooks with
  `PostFirstOpenOnly` (and the legacy `OpenHookUrl` with the server's `PostFirstOpenOnly`), which get
  first opens only; a `Click` post for the first click of each link only (Postmark posts "one event per
  unique click");
- the stats counters of domain/stats.py: every open and click counted (`Opens`, `TotalClicks`), firsts
  counted once (`UniqueOpens`, `UniqueLinksClicked`), and the breakdowns (platform, email client,
  browser, click location) counted per first open and per first click of a link, like the records
  Postmark keeps.

Automated hits (domain/useragents.py: Apple Mail Privacy Protection's prefetch, link scanners, crawlers)
are recorded but are not opens or clicks: no counter, no first, no timeline event, no Click post; an
Open webhook that wants every open still gets them with `FirstOpen: false`, as Postmark would post
them, and their UserAgent shows what they were. So a scanner following every link on delivery does not
become the recipient's unique click, and the real click later does.

`ReadSeconds` is always 0 and no read-time counters are kept: Postmark measures read time by how long
the pixel's connection stays open, which would hold a listener connection per open for seconds and
reads nothing through image proxies and caches. Posthouse does not pretend to measure it.

Hits queued in memory are recorded when the process stops cleanly (the recorder drains the queue);
a process killed with SIGKILL loses the hits of its last batch, at most `queue_size` of them. They are
answers to image and link fetches, not acknowledged submissions, so nothing a client was promised is lost.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import quote, urlsplit

from posthouse.server.domain.stats import Family, Metric, StatKey, day_of, family_metric
from posthouse.server.domain.statuses import EventType
from posthouse.server.domain.tracking import decode_token
from posthouse.server.domain.useragents import Platform, classify
from posthouse.server.services.clock import Clock
from posthouse.server.services.geoip import NOWHERE, GeoIp
from posthouse.server.services.hints import WebhookHints
from posthouse.server.services.notifications import new_event_key
from posthouse.server.store.base import Store, WebhookEvent
from posthouse.server.store.sql import Stmt
from posthouse.server.store.stats import bump_stats
from posthouse.server.store.tracking import (
    CLICK,
    OPEN,
    Firsts,
    HitRecord,
    TrackedDelivery,
    TrackedLink,
    timeline_events,
)
from posthouse.server.store.webhooks import webhook_fanout
from posthouse.server.webhooks import payloads

log = logging.getLogger("posthouse.tracking")

# The 43-byte transparent 1×1 GIF served for every /o/ request.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
assert len(PIXEL) == 43

_CACHE_SIZE = 100_000  # deliveries and links remembered (they never change once stored)
# A repeat open goes only to the webhooks that want every open.
_FIRST_ONLY: tuple[str, list[object]] = ("w.open_first_only = 0", [])
_LOCATION_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII stays as it is in Location

K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A bounded map that forgets the least recently used entry."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)


@dataclass(slots=True)
class PendingHit:
    """A hit answered and queued, not yet recorded."""

    kind: str  # OPEN or CLICK
    delivery_id: int
    occurred_at: int
    user_agent: str
    ip: str | None
    link: int = 0
    delivery: TrackedDelivery | None = None  # known already for clicks (the redirect needed it)
    target: TrackedLink | None = None


def redirect_location(url: str) -> str | None:
    """The Location header for a stored link: http(s) only, with anything outside printable ASCII
    percent-encoded (a header carries ASCII; a URL with a CR or LF would split the response)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    if scheme not in ("http", "https"):
        return None
    return quote(url, safe=_LOCATION_SAFE)


class TrackingService:
    def __init__(self, store: Store, key: bytes, clock: Clock | None = None, *, queue_size: int = 10_000,
                 geo: GeoIp | None = None, hints: WebhookHints | None = None,
                 on_recorded: Callable[[], None] | None = None) -> None:
        self.store = store
        self.key = key
        self.clock = clock or Clock()
        self.geo = geo
        self.hints = hints or WebhookHints(store)
        self.on_recorded = on_recorded
        self.queue: asyncio.Queue[PendingHit] = asyncio.Queue(queue_size)
        self._deliveries: _Lru[int, TrackedDelivery] = _Lru(_CACHE_SIZE)
        self._links: _Lru[tuple[str, int], tuple[TrackedLink, str]] = _Lru(_CACHE_SIZE)

    # -- the request path ---------------------------------------------------------------------

    async def record_open(self, token: str, user_agent: str, ip: str | None) -> bool:
        """Queue an open if `token` is a pixel token this installation signed (waiting while the queue is
        full); False for anything else, which is not recorded (the pixel is served all the same)."""
        found = decode_token(self.key, token)
        if found is None or not found.is_open:
            return False
        await self.queue.put(PendingHit(OPEN, found.delivery_id, self.clock.micros(), user_agent, ip))
        return True

    async def follow_click(self, token: str, user_agent: str, ip: str | None, *, record: bool = True) -> str | None:
        """Where a link token leads (its Location header), queueing the click; None for a token this
        installation did not sign, or a link it does not know: that is a 404, never a redirect to a URL
        taken from the request (an open redirect)."""
        found = decode_token(self.key, token)
        if found is None or found.is_open:
            return None
        delivery = await self._delivery(found.delivery_id)
        if delivery is None:
            return None
        link = await self._link(delivery.message_id, found.link)
        if link is None:
            return None
        target, location = link
        if record:
            await self.queue.put(PendingHit(CLICK, found.delivery_id, self.clock.micros(), user_agent, ip,
                                            found.link, delivery, target))
        return location

    async def _delivery(self, delivery_id: int) -> TrackedDelivery | None:
        cached = self._deliveries.get(delivery_id)
        if cached is not None:
            return cached
        found = (await self.store.tracked_deliveries([delivery_id])).get(delivery_id)
        if found is not None:
            self._deliveries.put(delivery_id, found)
        return found

    async def _link(self, message_id: str, link: int) -> tuple[TrackedLink, str] | None:
        cached = self._links.get((message_id, link))
        if cached is not None:
            return cached
        target = await self.store.tracked_link(message_id, link)
        if target is None:
            return None
        location = redirect_location(target.url)
        if location is None:
            log.warning("tracked link %d of message %s is not an http(s) URL; answering 404", link, message_id)
            return None
        self._links.put((message_id, link), (target, location))
        return target, location

    # -- recording ----------------------------------------------------------------------------

    async def record_batch(self, pending: Sequence[PendingHit]) -> list[Firsts]:
        """Record hits in one transaction (see the module docstring); hits of deliveries that no longer
        exist are dropped with a log line. Returns each recorded hit's firsts, in order."""
        missing = [h.delivery_id for h in pending if h.delivery is None and self._deliveries.get(h.delivery_id) is None]
        if missing:
            for delivery_id, found in (await self.store.tracked_deliveries(missing)).items():
                self._deliveries.put(delivery_id, found)
        records: list[HitRecord] = []
        for h in pending:
            delivery = h.delivery or self._deliveries.get(h.delivery_id)
            if delivery is None:
                log.info("a %s of delivery %d was not recorded: the delivery no longer exists", h.kind, h.delivery_id)
                continue
            records.append(self._hit_record(h, delivery))
        if not records:
            return []
        wanted = set()
        for stream in {(r.delivery.server_id, r.delivery.stream) for r in records}:
            for record_type in ("Open", "Click"):
                if await self.hints.wants(*stream, record_type):
                    wanted.add((*stream, record_type))
        posted: list[bool] = []

        def consequences(firsts: list[Firsts]) -> list[Stmt]:
            stmts, any_posts = _consequences(records, firsts, wanted)
            posted.append(any_posts)
            return stmts

        firsts = await self.store.record_hits(records, consequences)
        if posted and posted[-1] and self.on_recorded is not None:
            self.on_recorded()
        return firsts

    def _hit_record(self, h: PendingHit, delivery: TrackedDelivery) -> HitRecord:
        agent = classify(h.user_agent)
        # A proxy's address says where the proxy is, not the reader: no Geo for it (Postmark would show
        # the proxy's city, which misleads).
        place = self.geo.locate(h.ip) if self.geo is not None and not agent.proxy else NOWHERE
        return HitRecord(
            delivery=delivery, kind=h.kind, occurred_at=h.occurred_at, user_agent=h.user_agent,
            platform=(agent.open_platform if h.kind == OPEN else agent.click_platform).value,
            proxy=agent.proxy, automated=agent.automated,
            client_name=agent.client.name, client_company=agent.client.company, client_family=agent.client.family,
            os_name=agent.os.name, os_company=agent.os.company, os_family=agent.os.family, ip=h.ip,
            country_iso=place.country_iso_code, country=place.country, region_iso=place.region_iso_code,
            region=place.region, city=place.city, zip=place.zip, coords=place.coords,
            link=h.link if h.kind == CLICK else None, url=h.target.url if h.target else None,
            click_location=h.target.location if h.target else None)


def _open_facts(r: HitRecord, first: bool) -> payloads.OpenFacts:
    d = r.delivery
    return payloads.OpenFacts(
        message_id=d.message_id, message_stream=d.stream, recipient=d.recipient, received_at_us=r.occurred_at,
        first_open=first, platform=payloads.Platform(r.platform), user_agent=r.user_agent or None, read_seconds=0,
        client=payloads.AgentInfo(name=r.client_name, company=r.client_company, family=r.client_family),
        os=payloads.AgentInfo(name=r.os_name, company=r.os_company, family=r.os_family), geo=_geo(r),
        tag=d.tag, metadata=d.metadata)


def _click_facts(r: HitRecord) -> payloads.ClickFacts:
    d = r.delivery
    return payloads.ClickFacts(
        message_id=d.message_id, message_stream=d.stream, recipient=d.recipient, received_at_us=r.occurred_at,
        original_link=r.url or "", click_location=payloads.ClickLocation(r.click_location or "HTML"),
        platform=payloads.Platform(r.platform), user_agent=r.user_agent or None,
        client=payloads.AgentInfo(name=r.client_name, company=r.client_company, family=r.client_family),
        os=payloads.AgentInfo(name=r.os_name, company=r.os_company, family=r.os_family), geo=_geo(r),
        tag=d.tag, metadata=d.metadata)


def _geo(r: HitRecord) -> payloads.GeoInfo:
    return payloads.GeoInfo(country_iso_code=r.country_iso, country=r.country, region_iso_code=r.region_iso,
                            region=r.region, city=r.city, zip=r.zip, coords=r.coords, ip=r.ip)


def _consequences(records: Sequence[HitRecord], firsts: Sequence[Firsts],
                  wanted: set[tuple[int, str, str]]) -> tuple[list[Stmt], bool]:
    """The timeline events, counters and webhook posts of recorded hits (see the module docstring)."""
    events: list[tuple[str, int, str, str, int, dict[str, object]]] = []
    counts: list[tuple[StatKey, int]] = []
    first_opens: list[WebhookEvent] = []
    repeat_opens: list[WebhookEvent] = []
    clicks: list[WebhookEvent] = []
    for r, f in zip(records, firsts, strict=True):
        d = r.delivery

        def key(metric: str, d: TrackedDelivery = d, r: HitRecord = r) -> StatKey:
            return StatKey(d.server_id, day_of(r.occurred_at), d.stream, d.tag or "", metric)

        if r.kind == OPEN:
            if (d.server_id, d.stream, "Open") in wanted:
                body = payloads.open_payload(_open_facts(r, f.open)).decode()
                event = WebhookEvent(d.server_id, d.stream, "Open", new_event_key(), body, r.occurred_at,
                                     message_id=d.message_id)
                (first_opens if f.open else repeat_opens).append(event)
            if r.automated:
                continue
            counts.append((key(Metric.OPENS), 1))
            if f.open:
                summary = f"Email opened with {r.user_agent}" if r.user_agent else "Email opened"
                events.append((d.message_id, d.server_id, d.recipient, EventType.OPENED.value, r.occurred_at,
                               {"Summary": summary}))
                counts += [(key(Metric.UNIQUE_OPENS), 1), (key(family_metric(Family.OPEN_PLATFORM, r.platform)), 1)]
                if r.platform != Platform.UNKNOWN:
                    counts.append((key(Metric.WITH_PLATFORM_RECORDED), 1))
                if r.client_family:
                    counts += [(key(Metric.WITH_CLIENT_RECORDED), 1),
                               (key(family_metric(Family.OPEN_CLIENT, r.client_family)), 1)]
            continue
        if r.automated:
            continue
        counts.append((key(Metric.CLICKS), 1))
        if f.click:
            counts.append((key(Metric.UNIQUE_CLICKS), 1))
        if f.link_click:
            location = r.click_location or "HTML"
            part = "HTMLBody" if location == "HTML" else "TextBody"
            events.append((d.message_id, d.server_id, d.recipient, EventType.LINK_CLICKED.value, r.occurred_at,
                           {"Summary": f"Tracked Link '{r.url}' was clicked from the {part}.", "Link": r.url,
                            "ClickLocation": location}))
            counts += [(key(Metric.UNIQUE_LINKS_CLICKED), 1),
                       (key(family_metric(Family.CLICK_PLATFORM, r.platform)), 1),
                       (key(family_metric(Family.CLICK_LOCATION, location)), 1)]
            if r.client_family:
                counts.append((key(family_metric(Family.CLICK_BROWSER, r.client_family)), 1))
            if (d.server_id, d.stream, "Click") in wanted:
                body = payloads.click_payload(_click_facts(r)).decode()
                clicks.append(WebhookEvent(d.server_id, d.stream, "Click", new_event_key(), body, r.occurred_at,
                                           message_id=d.message_id))
    stmts = [*timeline_events(events), *bump_stats(counts), *webhook_fanout([*first_opens, *clicks]),
             *webhook_fanout(repeat_opens, condition=_FIRST_ONLY)]
    return stmts, bool(first_opens or repeat_opens or clicks)
