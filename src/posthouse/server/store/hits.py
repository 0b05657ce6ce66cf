"""Recorded opens and clicks (`tracking_hits`): one row per pixel fetch or followed link, searched by the
Opens and Clicks endpoints (docs/postmark-api.md §4.5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from posthouse.server.store.sql import Queries, Stmt, placeholders


class HitKind(StrEnum):
    OPEN = "open"
    CLICK = "click"


@dataclass(slots=True, kw_only=True)
class StoredHit:
    """A row of `tracking_hits` as the searches read it, in its column order (migration 0012); what the
    recorder writes is `store.tracking.HitRecord`."""

    server_id: int
    stream: str
    message_id: str
    delivery_id: int
    recipient: str
    tag: str | None
    kind: str  # HitKind
    occurred_at: int
    first: bool  # the delivery's first open (opens) or first click (clicks)
    proxy: bool  # fetched by an image proxy or prefetcher, not a person
    platform: str
    client_name: str | None = None
    client_company: str | None = None
    client_family: str | None = None
    os_name: str | None = None
    os_company: str | None = None
    os_family: str | None = None
    user_agent: str = ""
    ip: str | None = None
    country_iso: str | None = None
    country: str | None = None
    region_iso: str | None = None
    region: str | None = None
    city: str | None = None
    zip: str | None = None
    coords: str | None = None
    link: int | None = None  # clicks: the link's number in its message
    url: str | None = None  # clicks: where the link goes
    click_location: str | None = None  # clicks: HTML or Text
    id: int | None = None

    def row(self) -> tuple[Any, ...]:
        return tuple(int(v) if isinstance(v, bool) else v for v in (getattr(self, c) for c in HIT_COLUMNS))


HIT_COLUMNS = tuple(f.name for f in fields(StoredHit) if f.name != "id")
_SELECT = ", ".join(("id", *HIT_COLUMNS))


def insert_hits(hits: Sequence[StoredHit]) -> Stmt:
    """The statement that stores these hits (one multi-row insert)."""
    return Stmt(f"INSERT INTO tracking_hits ({', '.join(HIT_COLUMNS)}) VALUES ({placeholders(len(HIT_COLUMNS))})",
                many=[h.row() for h in hits])


def _hit(row: Sequence[Any]) -> StoredHit:
    values = dict(zip(("id", *HIT_COLUMNS), row, strict=True))
    values["first"] = bool(values["first"])
    values["proxy"] = bool(values["proxy"])
    return StoredHit(**values)


@dataclass(slots=True)
class HitFilter:
    """Postmark's filters of the Opens and Clicks searches; exact matches, `recipient` ignoring case."""

    stream: str | None = "outbound"
    recipient: str | None = None
    tag: str | None = None
    client_name: str | None = None
    client_company: str | None = None
    client_family: str | None = None
    os_name: str | None = None
    os_family: str | None = None
    os_company: str | None = None
    platform: str | None = None  # compared ignoring case (Postmark's docs write `webmail`)
    country: str | None = None
    region: str | None = None
    city: str | None = None
    from_time: int | None = None
    to_time: int | None = None


_EXACT = ("tag", "client_name", "client_company", "client_family", "os_name", "os_family", "os_company", "country",
          "region", "city")


class HitQueries(Queries):
    async def search_hits(self, server_id: int, kind: HitKind, f: HitFilter, offset: int, count: int
                          ) -> tuple[int, list[StoredHit]]:
        """(how many match, a page of them newest first)."""
        clauses = ["server_id = ?", "kind = ?"]
        args: list[Any] = [server_id, kind.value]
        if f.stream:
            clauses.append("stream = ?")
            args.append(f.stream)
        if f.recipient:
            # Indexed as lower(recipient) (migration 0015); a recipient is To, Cc or Bcc alike.
            clauses.append("lower(recipient) = ?")
            args.append(f.recipient.strip().lower())
        for column in _EXACT:
            value = getattr(f, column)
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if f.platform:
            clauses.append("lower(platform) = ?")
            args.append(f.platform.lower())
        if f.from_time is not None:
            clauses.append("occurred_at >= ?")
            args.append(f.from_time)
        if f.to_time is not None:
            clauses.append("occurred_at <= ?")
            args.append(f.to_time)
        where = " AND ".join(clauses)
        total = await self.query_one(f"SELECT count(*) FROM tracking_hits WHERE {where}", args)
        rows = await self.query(f"SELECT {_SELECT} FROM tracking_hits WHERE {where} "
                                "ORDER BY occurred_at DESC, id DESC LIMIT ? OFFSET ?", [*args, count, offset])
        return int(total[0]) if total else 0, [_hit(r) for r in rows]

    async def message_hits(self, server_id: int, message_id: str, kind: HitKind, offset: int, count: int
                           ) -> tuple[int, list[StoredHit]]:
        """(how many, a page of them newest first) of one message's opens or clicks."""
        where = "message_id = ? AND kind = ? AND server_id = ?"
        args = [message_id, kind.value, server_id]
        total = await self.query_one(f"SELECT count(*) FROM tracking_hits WHERE {where}", args)
        rows = await self.query(f"SELECT {_SELECT} FROM tracking_hits WHERE {where} "
                                "ORDER BY occurred_at DESC, id DESC LIMIT ? OFFSET ?", [*args, count, offset])
        return int(total[0]) if total else 0, [_hit(r) for r in rows]
