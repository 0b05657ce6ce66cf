"""Opens and clicks: the links of tracked messages, what a token leads to, and recording hits in batches.

A batch of hits is one transaction (docs/architecture.md §5): the per-delivery and per-link counters
are upserted first, each `RETURNING` its new total, and from those totals the same transaction knows
which hit was a recipient's first open, first click, or first click of a link (a total equal to what
this batch added means there was none before). The hits are then inserted with their `first` flag,
and the caller's consequences (timeline events, stats counters, webhook posts) are added in the same
transaction, so a crash leaves either all of a batch or none of it.

Hits marked `automated` (no person behind them, domain/useragents.py) are inserted but touch no
counter, so they are never a first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from posthouse.server.store.sql import Queries, Stmt, Then, placeholders

OPEN = "open"
CLICK = "click"
_ROWS_PER_STATEMENT = 128


@dataclass(frozen=True, slots=True)
class TrackedDelivery:
    """What a token's delivery id leads to: one recipient of one message, with what its events carry."""

    delivery_id: int
    message_id: str
    recipient: str
    server_id: int
    stream: str
    tag: str | None
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class TrackedLink:
    """A tracked link of a message: where it goes, and which part held it (HTML or Text)."""

    url: str
    location: str


@dataclass(slots=True)
class HitRecord:
    """One open or click to record, with everything `tracking_hits` keeps of it."""

    delivery: TrackedDelivery
    kind: str  # OPEN or CLICK
    occurred_at: int
    user_agent: str
    platform: str
    proxy: bool = False
    automated: bool = False
    client_name: str | None = None
    client_company: str | None = None
    client_family: str | None = None
    os_name: str | None = None
    os_company: str | None = None
    os_family: str | None = None
    ip: str | None = None
    country_iso: str | None = None
    country: str | None = None
    region_iso: str | None = None
    region: str | None = None
    city: str | None = None
    zip: str | None = None
    coords: str | None = None
    link: int | None = None
    url: str | None = None
    click_location: str | None = None


@dataclass(frozen=True, slots=True)
class Firsts:
    """What a recorded hit was a first of (all False for repeats and automated hits)."""

    open: bool = False  # the recipient's first open of the message
    click: bool = False  # the recipient's first click of any link of the message
    link_click: bool = False  # the recipient's first click of this link (Postmark's "unique click")


NOT_FIRST = Firsts()

_HIT_COLUMNS = ("server_id, stream, message_id, delivery_id, recipient, tag, kind, occurred_at, first, proxy, "
                "automated, platform, client_name, client_company, client_family, os_name, os_company, os_family, "
                "user_agent, ip, country_iso, country, region_iso, region, city, zip, coords, link, url, "
                "click_location")
_INSERT_HITS = f"INSERT INTO tracking_hits ({_HIT_COLUMNS}) VALUES ({placeholders(30)})"
_INSERT_EVENTS = ("INSERT INTO events (message_id, server_id, recipient, type, occurred_at, details) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
_INSERT_LINKS = "INSERT INTO message_links (message_id, link, url, location) VALUES (?, ?, ?, ?)"


def _chunks(rows: Sequence[Any], cap: int = _ROWS_PER_STATEMENT) -> list[Sequence[Any]]:
    """`rows` in pieces of at most `cap`, each a power of two long, so few distinct statement texts exist."""
    out = []
    start = 0
    while start < len(rows):
        size = min(cap, 1 << ((len(rows) - start).bit_length() - 1))
        out.append(rows[start:start + size])
        start += size
    return out


def insert_message_links(rows: Sequence[tuple[str, int, str, str]]) -> list[Stmt]:
    """The statement that stores tracked links (message id, link number from 1, URL, "HTML"/"Text"),
    for the transaction that accepts their message; none for no links."""
    return [Stmt(_INSERT_LINKS, many=[list(r) for r in rows])] if rows else []


def timeline_events(rows: Sequence[tuple[str, int, str, str, int, dict[str, Any]]]) -> list[Stmt]:
    """Message events (message id, server id, recipient, type, time, details) for `MessageEvents`."""
    if not rows:
        return []
    return [Stmt(_INSERT_EVENTS, many=[[m, s, r, t, at, json.dumps(d)] for m, s, r, t, at, d in rows])]


def _hit_row(h: HitRecord, first: bool) -> list[Any]:
    d = h.delivery
    return [d.server_id, d.stream, d.message_id, d.delivery_id, d.recipient, d.tag, h.kind, h.occurred_at, int(first),
            int(h.proxy), int(h.automated), h.platform, h.client_name, h.client_company, h.client_family, h.os_name,
            h.os_company, h.os_family, h.user_agent, h.ip, h.country_iso, h.country, h.region_iso, h.region, h.city,
            h.zip, h.coords, h.link, h.url, h.click_location]


def _engagement_upserts(rows: Sequence[Sequence[Any]]) -> list[Stmt]:
    """Rows (delivery id, opens, clicks, first open, first click) added to `engagements`."""
    return [Stmt(
        "INSERT INTO engagements (delivery_id, opens, clicks, first_open_at, first_click_at) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
        + " ON CONFLICT (delivery_id) DO UPDATE SET opens = engagements.opens + excluded.opens, "
        "clicks = engagements.clicks + excluded.clicks, "
        "first_open_at = COALESCE(engagements.first_open_at, excluded.first_open_at), "
        "first_click_at = COALESCE(engagements.first_click_at, excluded.first_click_at) "
        "RETURNING delivery_id, opens, clicks",
        [v for row in chunk for v in row], fetch=True) for chunk in _chunks(rows)]


def _link_upserts(rows: Sequence[Sequence[Any]]) -> list[Stmt]:
    """Rows (delivery id, link, clicks, first click) added to `link_engagements`."""
    return [Stmt(
        "INSERT INTO link_engagements (delivery_id, link, clicks, first_click_at) VALUES "
        + ", ".join(["(?, ?, ?, ?)"] * len(chunk))
        + " ON CONFLICT (delivery_id, link) DO UPDATE SET clicks = link_engagements.clicks + excluded.clicks "
        "RETURNING delivery_id, link, clicks",
        [v for row in chunk for v in row], fetch=True) for chunk in _chunks(rows)]


def _earliest(hits: Sequence[HitRecord], indexes: list[int]) -> int:
    return min(indexes, key=lambda i: (hits[i].occurred_at, i))


def tell_firsts(hits: Sequence[HitRecord], open_totals: dict[int, int], click_totals: dict[int, int],
                link_totals: dict[tuple[int, int], int]) -> list[Firsts]:
    """Each hit's firsts, given the counters' totals after this batch's upserts.

    A counter whose total equals what this batch added had nothing before it, so the batch's earliest
    counted hit of that key is the first. Keys are a delivery (opens, clicks) or a delivery and link."""
    opens: dict[int, list[int]] = {}
    clicks: dict[int, list[int]] = {}
    links: dict[tuple[int, int], list[int]] = {}
    for i, h in enumerate(hits):
        if h.automated:
            continue
        key = h.delivery.delivery_id
        if h.kind == OPEN:
            opens.setdefault(key, []).append(i)
        else:
            clicks.setdefault(key, []).append(i)
            links.setdefault((key, h.link or 0), []).append(i)
    first_open = {_earliest(hits, ix) for key, ix in opens.items() if open_totals.get(key) == len(ix)}
    first_click = {_earliest(hits, ix) for key, ix in clicks.items() if click_totals.get(key) == len(ix)}
    first_link = {_earliest(hits, ix) for key, ix in links.items() if link_totals.get(key) == len(ix)}
    return [Firsts(open=i in first_open, click=i in first_click, link_click=i in first_link)
            if i in first_open or i in first_click or i in first_link else NOT_FIRST for i in range(len(hits))]


class TrackingQueries(Queries):
    async def store_message_links(self, message_id: str, links: Sequence[tuple[int, str, str]]) -> None:
        """Store a message's tracked links (link number, URL, location) on their own; acceptance puts
        `insert_message_links` in its own transaction instead."""
        await self.transact(insert_message_links([(message_id, n, url, where) for n, url, where in links]))

    async def tracked_deliveries(self, ids: Sequence[int]) -> dict[int, TrackedDelivery]:
        """The deliveries (of any server) that tokens name, with their messages' facts; unknown ids are left out."""
        wanted = sorted({i for i in ids if 0 < i < 2**63})
        found: dict[int, TrackedDelivery] = {}
        for chunk in _chunks(wanted, 256):
            rows = await self.query(
                "SELECT d.id, d.message_id, d.recipient, m.server_id, m.stream, m.tag, m.metadata FROM deliveries d "
                f"JOIN messages m ON m.message_id = d.message_id WHERE d.id IN ({placeholders(len(chunk))})",
                list(chunk))
            for r in rows:
                found[int(r[0])] = TrackedDelivery(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5],
                                                   json.loads(r[6]) if r[6] and r[6] != "{}" else {})
        return found

    async def tracked_link(self, message_id: str, link: int) -> TrackedLink | None:
        row = await self.query_one("SELECT url, location FROM message_links WHERE message_id = ? AND link = ?",
                                   (message_id, link))
        return TrackedLink(row[0], row[1]) if row else None

    async def record_hits(self, hits: Sequence[HitRecord],
                          consequences: Callable[[list[Firsts]], list[Stmt]]) -> list[Firsts]:
        """Record a batch of hits in one transaction, with the statements `consequences(firsts)` gives
        (one `Firsts` per hit, in order); returns those firsts."""
        per_delivery: dict[int, list[Any]] = {}
        per_link: dict[tuple[int, int], list[Any]] = {}
        for h in hits:
            if h.automated:
                continue
            key = h.delivery.delivery_id
            row = per_delivery.setdefault(key, [key, 0, 0, None, None])
            if h.kind == OPEN:
                row[1] += 1
                row[3] = h.occurred_at if row[3] is None else min(row[3], h.occurred_at)
            else:
                row[2] += 1
                row[4] = h.occurred_at if row[4] is None else min(row[4], h.occurred_at)
                link = per_link.setdefault((key, h.link or 0), [key, h.link or 0, 0, h.occurred_at])
                link[2] += 1
                link[3] = min(link[3], h.occurred_at)
        # Sorted keys: concurrent batches (other nodes) lock the counters in one order and cannot deadlock.
        engagement = _engagement_upserts([per_delivery[k] for k in sorted(per_delivery)])
        links = _link_upserts([per_link[k] for k in sorted(per_link)])
        built: list[list[Firsts]] = []

        def then(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            open_totals: dict[int, int] = {}
            click_totals: dict[int, int] = {}
            link_totals: dict[tuple[int, int], int] = {}
            for rows in results[:len(engagement)]:
                for r in rows:
                    open_totals[int(r[0])], click_totals[int(r[0])] = int(r[1]), int(r[2])
            for rows in results[len(engagement):len(engagement) + len(links)]:
                for r in rows:
                    link_totals[(int(r[0]), int(r[1]))] = int(r[2])
            firsts = tell_firsts(hits, open_totals, click_totals, link_totals)
            built.append(firsts)
            rows = [_hit_row(h, f.open if h.kind == OPEN else f.link_click) for h, f in zip(hits, firsts, strict=True)]
            return [Stmt(_INSERT_HITS, many=rows), *consequences(firsts)]

        await self.transact([*engagement, *links, Then(then)])
        return built[-1]  # the last build is the one committed (a failed group runs again alone)
