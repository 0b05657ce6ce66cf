"""Bounces and suppressions: what came back from receivers, and the addresses a stream no longer sends to.

A bounce that deactivates (hard bounce, spam complaint) suppresses its address in the transaction that
records it, and that suppression's `SubscriptionChange` webhooks and message event are written only if
the address was not suppressed already (the first occurrence wins; later ones change nothing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posthouse.server.domain.stats import bounce_increment
from posthouse.server.store.sql import LIKE_ESCAPE, Queries, Ref, Stmt, like_contains, placeholders
from posthouse.server.store.stats import bump_stats
from posthouse.server.store.webhooks import WebhookEvent, webhook_fanout


@dataclass(slots=True)
class BounceRecord:
    server_id: int
    message_id: str | None
    stream: str
    type: str
    type_code: int
    email: str
    sender: str
    subject: str
    tag: str | None
    description: str
    details: str
    bounced_at: int
    inactive: bool
    can_activate: bool
    dump: str
    id: int | None = None
    dump_available: bool = False


@dataclass(slots=True)
class BounceFilter:
    type: str | None = None
    inactive: bool | None = None
    email: str | None = None  # a substring of the address
    tag: str | None = None
    message_id: str | None = None
    stream: str | None = None
    from_time: int | None = None
    to_time: int | None = None


@dataclass(slots=True)
class SuppressionRecord:
    email: str
    reason: str  # HardBounce | SpamComplaint | ManualSuppression
    origin: str  # Recipient | Customer | Admin
    created_at: int


@dataclass(slots=True)
class Suppression:
    """A suppression to add in the transaction of its cause, with what it announces if it is new."""

    server_id: int
    stream: str
    email: str
    reason: str
    origin: str
    created_at: int
    event: WebhookEvent | None = None  # SubscriptionChange
    message_event: tuple[str, str, dict[str, Any]] | None = None  # (message_id, recipient, details)


_BOUNCE_COLUMNS = ("id, server_id, message_id, stream, type, type_code, email, sender, subject, tag, description, "
                   "details, bounced_at, inactive, can_activate, dump")
_BOUNCE_LIST_COLUMNS = _BOUNCE_COLUMNS.replace(", dump", ", CASE WHEN length(dump) > 0 THEN 1 ELSE 0 END")


def _bounce(row: Sequence[Any], *, with_dump: bool) -> BounceRecord:
    return BounceRecord(
        id=row[0], server_id=row[1], message_id=row[2], stream=row[3], type=row[4], type_code=row[5], email=row[6],
        sender=row[7], subject=row[8], tag=row[9], description=row[10], details=row[11], bounced_at=row[12],
        inactive=bool(row[13]), can_activate=bool(row[14]), dump=row[15] if with_dump else "",
        dump_available=bool(row[15]))


def insert_bounce(b: BounceRecord) -> Stmt:
    """The bounce row; its id comes back (fetch) for `Ref`s in the same transaction."""
    return Stmt(
        "INSERT INTO bounces (server_id, message_id, stream, type, type_code, email, sender, subject, tag, "
        f"description, details, bounced_at, inactive, can_activate, dump) VALUES ({placeholders(15)}) RETURNING id",
        (b.server_id, b.message_id, b.stream, b.type, b.type_code, b.email, b.sender, b.subject, b.tag,
         b.description, b.details, b.bounced_at, int(b.inactive), int(b.can_activate), b.dump), fetch=True)


def suppress(s: Suppression, bounce_id: Any = None) -> list[Stmt]:
    """Suppress an address unless it already is; announce it (webhooks, message event) only if new.

    `bounce_id` (an int or a `Ref`) ties the suppression to its bounce, and tells a fresh row from an
    old one; a manual suppression has none, so it is told by its `created_at` and origin instead.
    """
    # A spam complaint outranks an earlier hard bounce or manual suppression: it takes the row over (and
    # announces itself), so deleting the suppression later can never resume mail to someone who complained.
    stmts = [Stmt(
        "INSERT INTO suppressions (server_id, stream, email, reason, origin, bounce_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (server_id, stream, email) DO UPDATE SET "
        "reason = excluded.reason, origin = excluded.origin, bounce_id = excluded.bounce_id, "
        "created_at = excluded.created_at "
        "WHERE excluded.reason = 'SpamComplaint' AND suppressions.reason <> 'SpamComplaint'",
        (s.server_id, s.stream, s.email, s.reason, s.origin, bounce_id, s.created_at))]
    if bounce_id is not None:
        fresh = ("EXISTS (SELECT 1 FROM suppressions s WHERE s.server_id = ? AND s.stream = ? AND s.email = ? "
                 "AND s.bounce_id = ?)", [s.server_id, s.stream, s.email, bounce_id])
    else:
        fresh = ("EXISTS (SELECT 1 FROM suppressions s WHERE s.server_id = ? AND s.stream = ? AND s.email = ? "
                 "AND s.bounce_id IS NULL AND s.created_at = ? AND s.origin = ?)",
                 [s.server_id, s.stream, s.email, s.created_at, s.origin])
    if s.message_event is not None:
        message_id, recipient, details = s.message_event
        stmts.append(Stmt(
            "INSERT INTO events (message_id, server_id, recipient, type, occurred_at, details) "
            f"SELECT ?, ?, ?, 'SubscriptionChanged', ?, ? WHERE {fresh[0]}",
            [message_id, s.server_id, recipient, s.created_at, json.dumps(details), *fresh[1]]))
    if s.event is not None:
        stmts.extend(webhook_fanout([s.event], condition=fresh))
    return stmts


class FeedbackQueries(Queries):
    # Counts writes that may have added suppressions, this process's and those other processes announced
    # (`change_notice`); `SuppressionHints` reloads when it moves.
    suppression_epoch = 0

    def suppressions_changed(self) -> None:
        """This process committed suppressions: count it, and tell other processes where the commit could not."""
        self.suppression_epoch += 1
        self.announce_change("suppressions")

    async def streams_with_suppressions(self) -> set[tuple[int, str]]:
        """(server, stream) pairs with at least one suppression: one index probe per stream."""
        rows = await self.query("SELECT m.server_id, m.id FROM message_streams m WHERE EXISTS "
                                "(SELECT 1 FROM suppressions s WHERE s.server_id = m.server_id AND s.stream = m.id)")
        return {(int(r[0]), str(r[1])) for r in rows}

    # -- bounces ------------------------------------------------------------------------------

    async def list_bounces(self, server_id: int, f: BounceFilter, offset: int, count: int
                           ) -> tuple[int, list[BounceRecord]]:
        clauses = ["server_id = ?"]
        args: list[Any] = [server_id]
        for column, value in (("type", f.type), ("tag", f.tag), ("message_id", f.message_id), ("stream", f.stream)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if f.inactive is not None:
            clauses.append("inactive = ?")
            args.append(int(f.inactive))
        if f.email:
            clauses.append(f"lower(email) LIKE ? {LIKE_ESCAPE}")
            args.append(like_contains(f.email.lower()))
        if f.from_time is not None:
            clauses.append("bounced_at >= ?")
            args.append(f.from_time)
        if f.to_time is not None:
            clauses.append("bounced_at <= ?")
            args.append(f.to_time)
        where = " AND ".join(clauses)
        total = await self.query_one(f"SELECT count(*) FROM bounces WHERE {where}", args)
        rows = await self.query(f"SELECT {_BOUNCE_LIST_COLUMNS} FROM bounces WHERE {where} "
                                "ORDER BY bounced_at DESC, id DESC LIMIT ? OFFSET ?", [*args, count, offset])
        return int(total[0]) if total else 0, [_bounce(r, with_dump=False) for r in rows]

    async def get_bounce(self, server_id: int, bounce_id: int) -> BounceRecord | None:
        row = await self.query_one(f"SELECT {_BOUNCE_COLUMNS} FROM bounces WHERE server_id = ? AND id = ?",
                                   (server_id, bounce_id))
        return _bounce(row, with_dump=True) if row else None

    async def bounce_counts(self, server_id: int) -> tuple[int, dict[str, int]]:
        """(addresses inactive now, bounces by type) for `/deliverystats`."""
        inactive = await self.query_one("SELECT count(*) FROM suppressions WHERE server_id = ?", (server_id,))
        rows = await self.query("SELECT type, count(*) FROM bounces WHERE server_id = ? GROUP BY type", (server_id,))
        return int(inactive[0]) if inactive else 0, {r[0]: int(r[1]) for r in rows}

    async def bounce_tags(self, server_id: int) -> list[str]:
        """The distinct tags of the server's bounces, in order (`/bounces/tags`)."""
        rows = await self.query("SELECT DISTINCT tag FROM bounces WHERE server_id = ? AND tag IS NOT NULL "
                                "AND tag <> ''", (server_id,))
        return sorted(r[0] for r in rows)  # by code point on both databases (PostgreSQL's collation may differ)

    async def record_bounces(self, bounces: Sequence[tuple[BounceRecord, str | tuple[str, str] | None,
                                                           list[WebhookEvent], Suppression | None]]) -> list[int]:
        """Bounces that arrive on their own (DSNs, complaints, auto-replies): each with its message event
        (a `Bounced` summary, or (event type, summary), or None for none), its webhooks (`bounce_id`
        filled in) and its suppression; their ids."""
        stmts, positions = self.bounce_stmts(bounces)
        results = await self.transact(stmts)
        self.bounces_recorded(bounces)
        return [int(results[p][0][0]) for p in positions]

    def bounce_stmts(self, bounces: Sequence[tuple[BounceRecord, str | tuple[str, str] | None,
                                                   list[WebhookEvent], Suppression | None]]
                     ) -> tuple[list[Stmt], list[int]]:
        """The statements `record_bounces` runs, to start a transaction (their `Ref`s count from its first
        statement), and the position of each bounce's insert; `bounces_recorded` after the commit."""
        stmts: list[Stmt] = []
        positions = []
        for bounce, message_event, events, suppression in bounces:
            positions.append(len(stmts))
            ref = Ref(len(stmts))
            stmts.append(insert_bounce(bounce))
            if isinstance(message_event, str):
                message_event = ("Bounced", message_event)
            if bounce.message_id is not None and message_event is not None:
                stmts.append(Stmt(
                    "INSERT INTO events (message_id, server_id, recipient, type, occurred_at, details, bounce_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (bounce.message_id, bounce.server_id, bounce.email, message_event[0], bounce.bounced_at,
                     json.dumps({"Summary": message_event[1]}), ref)))
            for event in events:
                event.bounce_id = ref
            stmts.extend(webhook_fanout(events))
            if suppression is not None:
                stmts.extend(suppress(suppression, ref))
        if any(b[3] is not None for b in bounces):
            stmts.extend(self.change_notice("suppressions"))
        # Complaints and bounces count in the stats with the records (docs/architecture.md §6).
        stmts.extend(bump_stats(bounce_increment(b.server_id, b.stream, b.tag, b.type, b.bounced_at)
                                for b, _, _, _ in bounces))
        return stmts, positions

    def bounces_recorded(self, bounces: Sequence[tuple[BounceRecord, Any, Any, Suppression | None]]) -> None:
        """After the commit of `bounce_stmts`: this process's suppression cache learns of new ones."""
        if any(b[3] is not None for b in bounces):
            self.suppressions_changed()

    async def activate_bounce(self, server_id: int, bounce_id: int, events: Sequence[WebhookEvent]) -> None:
        """Reactivate the address of a bounce: the bounce is no longer inactive, its suppression goes,
        and the SubscriptionChange webhooks are posted only if there was a suppression to remove."""
        bounce = await self.get_bounce(server_id, bounce_id)
        if bounce is None:
            return
        # A spam complaint is never lifted by reactivating a bounce (Postmark: complaints cannot be undone).
        gone = ("EXISTS (SELECT 1 FROM suppressions s WHERE s.server_id = ? AND s.stream = ? AND s.email = ? "
                "AND s.reason <> 'SpamComplaint')", [server_id, bounce.stream, bounce.email.lower()])
        await self.transact([
            *webhook_fanout(events, condition=gone),
            Stmt("UPDATE bounces SET inactive = 0 WHERE server_id = ? AND stream = ? AND lower(email) = ?",
                 (server_id, bounce.stream, bounce.email.lower())),
            Stmt("DELETE FROM suppressions WHERE server_id = ? AND stream = ? AND email = ? "
                 "AND reason <> 'SpamComplaint'", (server_id, bounce.stream, bounce.email.lower())),
        ])

    # -- suppressions -------------------------------------------------------------------------

    async def suppressed_in_any_stream(self, server_id: int, emails: Sequence[str]) -> set[tuple[str, str]]:
        """(stream, email) pairs suppressed among these lower-cased addresses: one read for a whole batch."""
        if not emails:
            return set()
        unique = sorted(set(emails))
        rows = await self.query(
            f"SELECT stream, email FROM suppressions WHERE server_id = ? AND email IN ({placeholders(len(unique))})",
            [server_id, *unique])
        return {(r[0], r[1]) for r in rows}

    async def list_suppressions(self, server_id: int, stream: str, *, reason: str | None = None,
                                origin: str | None = None, email: str | None = None, from_time: int | None = None,
                                to_time: int | None = None, limit: int | None = None) -> list[SuppressionRecord]:
        clauses = ["server_id = ?", "stream = ?"]
        args: list[Any] = [server_id, stream]
        for column, value in (("reason", reason), ("origin", origin), ("email", email.lower() if email else None)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if from_time is not None:
            clauses.append("created_at >= ?")
            args.append(from_time)
        if to_time is not None:
            clauses.append("created_at <= ?")
            args.append(to_time)
        if limit is not None:  # the dashboard's page (the API's dump lists them all)
            args.append(limit)
        rows = await self.query(f"SELECT email, reason, origin, created_at FROM suppressions WHERE "
                                f"{' AND '.join(clauses)} ORDER BY created_at DESC, email"
                                + (" LIMIT ?" if limit is not None else ""), args)
        return [SuppressionRecord(r[0], r[1], r[2], r[3]) for r in rows]

    async def add_suppressions(self, suppressions: Sequence[Suppression]) -> None:
        stmts: list[Stmt] = []
        for s in suppressions:
            stmts.extend(suppress(s))
        await self.transact([*stmts, *self.change_notice("suppressions")])
        self.suppressions_changed()

    async def remove_suppressions(self, server_id: int, stream: str, emails: Sequence[str],
                                  events: Sequence[WebhookEvent]) -> None:
        """Delete suppressions (and reactivate their bounces), announcing each that existed."""
        stmts: list[Stmt] = []
        for email, event in zip(emails, events, strict=True):
            existed = ("EXISTS (SELECT 1 FROM suppressions s WHERE s.server_id = ? AND s.stream = ? AND s.email = ? "
                       "AND s.reason <> 'SpamComplaint')", [server_id, stream, email])
            stmts.extend(webhook_fanout([event], condition=existed))
            stmts.append(Stmt("UPDATE bounces SET inactive = 0 WHERE server_id = ? AND stream = ? AND lower(email) = ? "
                              f"AND {existed[0]}", (server_id, stream, email, *existed[1])))
            # Spam complaints are never deleted (docs/postmark-api.md §8.2), even if one arrived a moment ago.
            stmts.append(Stmt("DELETE FROM suppressions WHERE server_id = ? AND stream = ? AND email = ? "
                              "AND reason <> 'SpamComplaint'", (server_id, stream, email)))
        await self.transact(stmts)
