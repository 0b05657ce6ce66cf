"""Inbound mail: received messages (stored before the SMTP 250), their search, and inbound rules.

A received message's bytes go once into `inbound_contents`; each recipient it came to gets a row of
`inbound_messages` and, unless it is Blocked, an Inbound post to its server's InboundHookUrl in the outbox
(`webhook_fanout`), all in one transaction. Whether there is a hook to post to is read in that transaction
too: without one the message is Processed at once, with one it is Queued and the post exists, never one
without the other. The post's outcome moves the message's status (store/webhooks.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from posthouse.server.domain.inbound import InboundStatus
from posthouse.server.store.sql import LIKE_ESCAPE, Queries, Ref, Stmt, Then, like_contains, placeholders
from posthouse.server.store.webhooks import PENDING_POST_STATES, WebhookEvent, webhook_fanout

__all__ = ["InboundFilter", "InboundQueries", "InboundRecord", "InboundRow", "InboundRule"]

_COLUMNS = ("message_id", "server_id", "stream", "received_at", "status", "reason", "envelope_sender",
            "original_recipient", "mailbox_hash", "from_email", "subject", "tag", "recipients", "summary",
            "spam_score")
_READ = "id, " + ", ".join(_COLUMNS)
# The status of a message that is not Blocked: Queued when its server has an InboundHookUrl to post it to.
_HOOK_STATUS = (f"CASE WHEN EXISTS (SELECT 1 FROM webhooks w WHERE w.server_id = ? AND w.stream = ? "
                f"AND w.on_inbound = 1) THEN '{InboundStatus.QUEUED.value}' ELSE '{InboundStatus.PROCESSED.value}' END")
_PENDING = "(" + ", ".join(f"'{s}'" for s in PENDING_POST_STATES) + ")"


@dataclass(slots=True)
class InboundRow:
    """One received message for one recipient, as acceptance stores it. `blocked_reason` set: Blocked."""

    message_id: str
    server_id: int
    stream: str
    received_at: int
    envelope_sender: str
    original_recipient: str
    mailbox_hash: str
    from_email: str
    subject: str
    tag: str
    recipients: list[str]  # lower-cased: the envelope recipient, To and Cc (the `recipient` filter)
    summary: dict[str, Any]  # the list item's address fields and attachments (services/inbound.py)
    spam_score: float | None = None
    blocked_reason: str | None = None


@dataclass(slots=True)
class InboundRecord:
    id: int
    message_id: str
    server_id: int
    stream: str
    received_at: int
    status: str
    reason: str | None
    envelope_sender: str
    original_recipient: str
    mailbox_hash: str
    from_email: str
    subject: str
    tag: str
    summary: dict[str, Any]
    spam_score: float | None
    content: bytes | None = None


@dataclass(slots=True)
class InboundFilter:
    """`GET /messages/inbound` filters (docs/postmark-api.md §4.6); None means not filtered."""

    recipient: str | None = None
    from_email: str | None = None
    tag: str | None = None
    subject: str | None = None
    mailbox_hash: str | None = None
    status: str | None = None
    from_time: int | None = None
    to_time: int | None = None
    statuses: tuple[str, ...] = field(default_factory=tuple)  # several statuses at once (none: any)


@dataclass(slots=True)
class InboundRule:
    id: int
    rule: str


def _record(row: Sequence[Any], content: Any = None) -> InboundRecord:
    return InboundRecord(
        id=int(row[0]), message_id=row[1], server_id=int(row[2]), stream=row[3], received_at=int(row[4]),
        status=row[5], reason=row[6], envelope_sender=row[7], original_recipient=row[8], mailbox_hash=row[9],
        from_email=row[10], subject=row[11], tag=row[12], summary=json.loads(row[14]),
        spam_score=row[15], content=bytes(content) if content is not None else None)


def inbound_stmts(content: bytes, rows: Sequence[InboundRow], base: int = 0) -> list[Stmt]:
    """The statements that store a received message (`insert_inbound`), as statements `base` onwards of a
    transaction (their `Ref`s count from there); `inbound_statuses` reads the outcome."""
    stmts = [
        Stmt("INSERT INTO inbound_contents (content) VALUES (?) RETURNING id", (content,), fetch=True)]
    events = []
    for row in rows:
        status_sql = "?" if row.blocked_reason is not None else _HOOK_STATUS
        status_args: tuple[Any, ...] = (InboundStatus.BLOCKED.value,) if row.blocked_reason is not None \
            else (row.server_id, row.stream)
        stmts.append(Stmt(
            f"INSERT INTO inbound_messages ({', '.join(_COLUMNS)}, content_id) VALUES (?, ?, ?, ?, {status_sql}, "
            f"{placeholders(11)}) RETURNING id, status",
            (row.message_id, row.server_id, row.stream, row.received_at, *status_args, row.blocked_reason,
             row.envelope_sender, row.original_recipient, row.mailbox_hash, row.from_email, row.subject, row.tag,
             "|" + "|".join(row.recipients) + "|", json.dumps(row.summary, ensure_ascii=False), row.spam_score,
             Ref(base)), fetch=True))
        if row.blocked_reason is None:
            # Posts to the server's hook if it has one (the join finds none otherwise): the status above
            # reads the same rows in the same transaction.
            events.append(WebhookEvent(server_id=row.server_id, stream=row.stream, record_type="Inbound",
                                       event_key=row.message_id, payload="", occurred_at=row.received_at,
                                       inbound_id=Ref(base + len(stmts) - 1)))
    stmts += webhook_fanout(events)
    return stmts


def inbound_statuses(results: list[list[Sequence[Any]]], rows: Sequence[InboundRow], base: int = 0) -> list[str]:
    """Each row's status (Queued, Processed or Blocked), from the results of a transaction that ran
    `inbound_stmts(…, base)`."""
    return [str(results[base + i][0][1]) for i in range(1, 1 + len(rows))]


class InboundQueries(Queries):
    # -- acceptance --------------------------------------------------------------------------------

    async def insert_inbound(self, content: bytes, rows: Sequence[InboundRow], before: Sequence[Stmt] = ()
                             ) -> list[str]:
        """Store a received message once and a row per recipient, with the posts of those not Blocked; one
        transaction, after the statements `before` (the bounces the same SMTP transaction carried, so that
        both are stored or neither: a sender's retry cannot record a bounce twice). Returns each row's status
        (Queued, Processed or Blocked)."""
        results = await self.transact([*before, *inbound_stmts(content, rows, len(before))])
        return inbound_statuses(results, rows, len(before))

    # -- reading -----------------------------------------------------------------------------------

    async def search_inbound(self, server_id: int, f: InboundFilter, offset: int, count: int
                             ) -> tuple[int, list[InboundRecord]]:
        where = ["server_id = ?"]
        args: list[Any] = [server_id]
        if f.recipient:
            where.append(f"recipients LIKE ? {LIKE_ESCAPE}")
            args.append(like_contains("|" + f.recipient.strip().lower() + "|"))
        if f.from_email:
            where.append("lower(from_email) = ?")
            args.append(f.from_email.strip().lower())
        if f.tag:
            where.append("tag = ?")
            args.append(f.tag)
        if f.subject:
            where.append(f"lower(subject) LIKE ? {LIKE_ESCAPE}")
            args.append(like_contains(f.subject.lower()))
        if f.mailbox_hash:
            where.append("mailbox_hash = ?")
            args.append(f.mailbox_hash)
        if f.statuses:
            where.append(f"status IN ({placeholders(len(f.statuses))})")
            args += list(f.statuses)
        if f.from_time is not None:
            where.append("received_at >= ?")
            args.append(f.from_time)
        if f.to_time is not None:
            where.append("received_at <= ?")
            args.append(f.to_time)
        clause = " AND ".join(where)
        total = await self.query_one(f"SELECT count(*) FROM inbound_messages WHERE {clause}", args)
        rows = await self.query(f"SELECT {_READ} FROM inbound_messages WHERE {clause} ORDER BY id DESC LIMIT ? "
                                "OFFSET ?", [*args, count, offset])
        return int(total[0]) if total else 0, [_record(r) for r in rows]

    async def get_inbound(self, server_id: int | None, message_id: str, *, with_content: bool = False
                          ) -> InboundRecord | None:
        """One message by its MessageID (of that server; any server with None), its bytes too if asked."""
        extra = ", c.content" if with_content else ""
        join = " JOIN inbound_contents c ON c.id = m.content_id" if with_content else ""
        columns = ", ".join(f"m.{c}" for c in ("id", *_COLUMNS))
        where, args = ("m.message_id = ?", [message_id]) if server_id is None else \
            ("m.message_id = ? AND m.server_id = ?", [message_id, server_id])
        row = await self.query_one(f"SELECT {columns}{extra} FROM inbound_messages m{join} WHERE {where}", args)
        if row is None:
            return None
        return _record(row, row[len(_COLUMNS) + 1] if with_content else None)

    async def get_inbound_by_id(self, inbound_id: int) -> InboundRecord | None:
        """A message with its bytes, by row id (the dispatcher building an Inbound post)."""
        columns = ", ".join(f"m.{c}" for c in ("id", *_COLUMNS))
        row = await self.query_one(f"SELECT {columns}, c.content FROM inbound_messages m JOIN inbound_contents c "
                                   "ON c.id = m.content_id WHERE m.id = ?", (inbound_id,))
        return _record(row, row[len(_COLUMNS) + 1]) if row is not None else None

    # -- bypass and retry (docs/postmark-api.md §4.1) ----------------------------------------------

    async def requeue_inbound(self, server_id: int, message_id: str, from_status: str, now: int) -> bool:
        """A Blocked message (bypass) or a Failed one (retry) queued again and posted, in one transaction; False
        when the message is not in `from_status` (or not this server's). Its earlier post, if any, is taken up
        again with a fresh schedule and the same `webhook-id`; without one (it was never posted) a post is made.
        Without an InboundHookUrl there is nothing to post to: the message is Processed."""
        update = Stmt(
            f"UPDATE inbound_messages SET status = {_HOOK_STATUS}, reason = NULL WHERE message_id = ? AND "
            "server_id = ? AND status = ? RETURNING id, server_id, stream, message_id, status",
            (server_id, "inbound", message_id, server_id, from_status), fetch=True)

        def post(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            if not results[0]:
                return []
            inbound_id, owner, stream, key, status = results[0][0]
            if status != InboundStatus.QUEUED.value:
                return []
            # The message's stream is its server's inbound stream; the hook row is found by it below.
            return [
                Stmt(f"UPDATE webhook_posts SET state = 'pending', attempts = 0, next_attempt_at = ?, "
                     f"lease_owner = NULL, updated_at = ? WHERE inbound_id = ? AND state NOT IN {_PENDING} "
                     "AND webhook_id IN (SELECT id FROM webhooks WHERE on_inbound = 1)", (now, now, inbound_id)),
                *webhook_fanout([WebhookEvent(server_id=owner, stream=stream, record_type="Inbound",
                                              event_key=key, payload="", occurred_at=now, inbound_id=inbound_id)],
                                condition=("NOT EXISTS (SELECT 1 FROM webhook_posts p WHERE p.inbound_id = ? "
                                           "AND p.webhook_id = w.id)", [inbound_id])),
            ]

        results = await self.transact([update, Then(post)])
        return bool(results[0])

    # -- inbound rules (docs/postmark-api.md §8.5) ---------------------------------------------------

    async def list_inbound_rules(self, server_id: int, offset: int | None = None, count: int | None = None
                                 ) -> tuple[int, list[InboundRule]]:
        total = await self.query_one("SELECT count(*) FROM inbound_rules WHERE server_id = ?", (server_id,))
        paging, args = "", [server_id]
        if count is not None:
            paging = " LIMIT ? OFFSET ?"
            args += [count, offset or 0]
        rows = await self.query(f"SELECT id, rule FROM inbound_rules WHERE server_id = ? ORDER BY id{paging}", args)
        return int(total[0]) if total else 0, [InboundRule(int(r[0]), r[1]) for r in rows]

    async def create_inbound_rule(self, server_id: int, rule: str, now: int) -> InboundRule | None:
        """The new rule; None when the server has it already (in any case)."""
        rows = (await self.transact([Stmt(
            "INSERT INTO inbound_rules (server_id, rule, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (server_id, lower(rule)) DO NOTHING RETURNING id, rule", (server_id, rule, now),
            fetch=True)]))[0]
        return InboundRule(int(rows[0][0]), rows[0][1]) if rows else None

    async def delete_inbound_rule(self, server_id: int, rule_id: int) -> str | None:
        """The removed rule's text; None when the server has no rule of that id."""
        rows = (await self.transact([Stmt("DELETE FROM inbound_rules WHERE id = ? AND server_id = ? RETURNING rule",
                                          (rule_id, server_id), fetch=True)]))[0]
        return str(rows[0][0]) if rows else None

    async def inbound_domains(self) -> dict[str, int]:
        """Every server's InboundDomain (lower-cased) → its id; servers without one are left out."""
        found: dict[str, int] = {}
        for server_id, settings in await self.query("SELECT id, settings FROM servers ORDER BY id"):
            domain = str(json.loads(settings).get("inbound_domain") or "").strip().lower().rstrip(".")
            if domain:
                found.setdefault(domain, int(server_id))
        return found
