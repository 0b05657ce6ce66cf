"""Webhooks and their outbox: configuration rows, the posts queued with each event, and the delivery log.

A webhook post is written in the transaction of the event that causes it (docs/architecture.md §5), fanned out in
SQL to every webhook of the event's stream whose trigger is on (`webhook_fanout`), so a webhook
created a moment ago on another node is never missed and no cache can be stale. The dispatcher
claims due posts with a lease, as the delivery worker claims queue rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from posthouse.server.domain.inbound import InboundStatus, status_after_post
from posthouse.server.store.sql import Queries, Stmt, Then, placeholders

# The trigger columns of `webhooks`, by the event that fires them, and the column that asks for the
# event's Content (bounce dump, abuse report) where Postmark offers one.
TRIGGERS = {
    "Delivery": ("on_delivery", None),
    "Bounce": ("on_bounce", "bounce_content"),
    "SpamComplaint": ("on_spam_complaint", "spam_complaint_content"),
    "SubscriptionChange": ("on_subscription_change", None),
    "Open": ("on_open", None),
    "Click": ("on_click", None),
    # An inbound message, to the server's InboundHookUrl (a hidden webhook of its inbound stream): the payload
    # is built when it is posted, from the stored message (services/inbound.py), so `payload` is empty.
    "Inbound": ("on_inbound", None),
}
PENDING_POST_STATES = ("pending", "sending")
_PENDING_POSTS = "('pending', 'sending')"
_FANOUT_ROWS = 128


@dataclass(slots=True)
class WebhookEvent:
    """One event for the webhooks of a stream: its payload (and the payload with Content, if any).

    `event_key` becomes the posts' `webhook-id` (with the webhook's id appended). `bounce_id`, when
    the bounce row is inserted in the same transaction, is a `Ref` and is written into the payload's
    `ID` when the post is sent.
    """

    server_id: int
    stream: str
    record_type: str  # a key of TRIGGERS
    event_key: str
    payload: str
    occurred_at: int
    payload_with_content: str | None = None
    bounce_id: Any = None  # int, a Ref, or None
    inbound_id: Any = None  # the inbound message an Inbound post carries: int, a Ref, or None
    message_id: str | None = None  # the message it is about, listed on the dashboard's message page


@dataclass(slots=True)
class WebhookRecord:
    id: int
    server_id: int
    stream: str
    url: str
    http_auth_username: str | None
    http_auth_password: str | None
    http_headers: list[tuple[str, str]]
    triggers: dict[str, bool]  # column name → on
    secret: str
    created_at: int


@dataclass(slots=True)
class ClaimedPost:
    id: int
    webhook_id: int
    event_id: str
    record_type: str
    payload: str
    bounce_id: int | None
    attempts: int
    created_at: int
    webhook: WebhookRecord | None = None
    inbound_id: int | None = None  # an Inbound post's message (inbound_messages.id)


@dataclass(slots=True)
class PostAttempt:
    attempted_at: int
    outcome: str
    status_code: int | None
    response_excerpt: str
    duration_ms: float
    error: str | None


@dataclass(slots=True)
class PostRecord:
    id: int
    webhook_id: int
    event_id: str
    record_type: str
    state: str
    attempts: int
    next_attempt_at: int | None
    created_at: int
    updated_at: int
    history: list[PostAttempt] = field(default_factory=list)


@dataclass(slots=True)
class PostUpdate:
    post: ClaimedPost
    lease_owner: str
    state: str  # pending (retry), delivered, failed, stopped, refused
    next_attempt_at: int
    attempt: PostAttempt


_TRIGGER_COLUMNS = ("on_open", "open_first_only", "on_click", "on_delivery", "on_bounce", "bounce_content",
                    "on_spam_complaint", "spam_complaint_content", "on_subscription_change")
_WEBHOOK_COLUMNS = ("id, server_id, stream, url, http_auth_username, http_auth_password, http_headers, "
                    + ", ".join(_TRIGGER_COLUMNS) + ", secret, created_at")


def _webhook(row: Sequence[Any]) -> WebhookRecord:
    n = len(_TRIGGER_COLUMNS)
    return WebhookRecord(
        id=row[0], server_id=row[1], stream=row[2], url=row[3], http_auth_username=row[4],
        http_auth_password=row[5], http_headers=[(h[0], h[1]) for h in json.loads(row[6])],
        triggers={c: bool(v) for c, v in zip(_TRIGGER_COLUMNS, row[7:7 + n], strict=True)},
        secret=row[7 + n], created_at=row[8 + n])


def webhook_fanout(events: Sequence[WebhookEvent], *, condition: tuple[str, list[Any]] | None = None) -> list[Stmt]:
    """Statements that queue a post of each event to every webhook of its stream with the trigger on.

    One multi-row statement per trigger (and chunk): `INSERT … SELECT … FROM (VALUES …) JOIN webhooks`.
    The CASTs give PostgreSQL the parameter types, and read the same on SQLite. `condition` (SQL, args)
    is ANDed in, to post only when an earlier statement of the transaction really changed something.
    """
    stmts = []
    by_type: dict[str, list[WebhookEvent]] = {}
    for event in events:
        by_type.setdefault(event.record_type, []).append(event)
    for record_type, group in by_type.items():
        trigger, content = TRIGGERS[record_type]
        payload = f"CASE WHEN w.{content} = 1 THEN v.column4 ELSE v.column3 END" if content else "v.column3"
        for start in range(0, len(group), _FANOUT_ROWS):
            chunk = group[start:start + _FANOUT_ROWS]
            row = ("(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), "
                   "CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BIGINT), "
                   "CAST(? AS TEXT))")
            args: list[Any] = []
            for e in chunk:
                args += [e.event_key, e.record_type, e.payload, e.payload_with_content or e.payload, e.bounce_id,
                         e.occurred_at, e.server_id, e.stream, e.inbound_id, e.message_id]
            extra = ""
            if condition is not None:
                extra = f" AND {condition[0]}"
                args += condition[1]
            stmts.append(Stmt(
                "INSERT INTO webhook_posts (webhook_id, server_id, event_id, record_type, payload, bounce_id, state, "
                "attempts, next_attempt_at, created_at, updated_at, inbound_id, message_id) "
                f"SELECT w.id, w.server_id, v.column1 || '_' || CAST(w.id AS TEXT), v.column2, {payload}, v.column5, "
                "'pending', 0, v.column6, v.column6, v.column6, v.column9, v.column10 "
                f"FROM (VALUES {', '.join([row] * len(chunk))}) AS v "
                f"JOIN webhooks w ON w.server_id = v.column7 AND w.stream = v.column8 AND w.{trigger} = 1{extra}",
                args))
    return stmts


@dataclass(slots=True)
class LegacyHook:
    """Where a legacy per-server hook URL posts, and what (docs/postmark-api.md §8.3)."""

    url: str
    username: str | None
    password: str | None
    triggers: dict[str, bool]  # column name → on (`on_inbound` for the InboundHookUrl)
    stream: str = "outbound"  # the InboundHookUrl's is the server's inbound stream


def legacy_hook_stmts(server_id: Any, hooks: Mapping[str, LegacyHook | None], secret: Callable[[], str],
                      now: int) -> list[Stmt]:
    """Make the server's legacy hooks (setting name → hook, or None for no URL) its webhooks of the default
    stream (the inbound stream for the InboundHookUrl): each one created or updated in place (its secret kept),
    or removed with its pending posts, whose inbound messages then fail (nothing is left to post them to).
    `server_id` may be a `Ref` (a server created in the same transaction)."""
    stmts = []
    for name, hook in sorted(hooks.items()):
        if hook is None:
            stmts.append(Stmt(
                "UPDATE inbound_messages SET status = ?, reason = ? WHERE id IN (SELECT inbound_id FROM webhook_posts "
                f"WHERE state IN {_PENDING_POSTS} AND inbound_id IS NOT NULL AND webhook_id IN "
                "(SELECT id FROM webhooks WHERE server_id = ? AND legacy = ?))",
                (InboundStatus.FAILED.value, f"The server's {name} was removed before the message was posted.",
                 server_id, name)))
            stmts.append(Stmt(
                f"UPDATE webhook_posts SET state = 'cancelled', lease_owner = NULL, updated_at = ? WHERE state IN "
                f"{_PENDING_POSTS} AND webhook_id IN (SELECT id FROM webhooks WHERE server_id = ? AND legacy = ?)",
                (now, server_id, name)))
            stmts.append(Stmt("DELETE FROM webhooks WHERE server_id = ? AND legacy = ?", (server_id, name)))
            continue
        triggers = [int(hook.triggers.get(c, False)) for c in _TRIGGER_COLUMNS]
        stmts.append(Stmt(
            f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS.removeprefix('id, ')}, legacy, on_inbound) "
            f"VALUES ({placeholders(19)}) "
            "ON CONFLICT (server_id, legacy) WHERE legacy IS NOT NULL DO UPDATE SET url = excluded.url, "
            "http_auth_username = excluded.http_auth_username, http_auth_password = excluded.http_auth_password, "
            + ", ".join(f"{c} = excluded.{c}" for c in (*_TRIGGER_COLUMNS, "on_inbound")),
            (server_id, hook.stream, hook.url, hook.username, hook.password, "[]", *triggers, secret(), now, name,
             int(hook.triggers.get("on_inbound", False)))))
    return stmts


class WebhookQueries(Queries):
    # Counts webhook changes, this process's and those other processes announced; `WebhookHints` reloads
    # when it moves.
    webhook_epoch = 0

    def webhooks_changed(self) -> None:
        """This process committed a webhook change: count it, and tell other processes where the commit
        could not."""
        self.webhook_epoch += 1
        self.announce_change("webhooks")

    # -- configuration ------------------------------------------------------------------------

    async def create_webhook(self, record: WebhookRecord, limit: int | None = None) -> int | None:
        """The new webhook's id; None if its stream already has `limit` webhooks (legacy hooks not counted).

        The server's row is updated first as a lock, so concurrent creates on PostgreSQL count each other.
        """
        values = (record.server_id, record.stream, record.url, record.http_auth_username, record.http_auth_password,
                  json.dumps(record.http_headers), *(int(record.triggers.get(c, False)) for c in _TRIGGER_COLUMNS),
                  record.secret, record.created_at)
        notice = self.change_notice("webhooks")
        if limit is None:
            rows = await self.transact([Stmt(
                f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS.removeprefix('id, ')}) VALUES ({placeholders(17)}) "
                "RETURNING id", values, fetch=True), *notice])
            self.webhooks_changed()
            return int(rows[0][0][0])
        rows = await self.transact([
            Stmt("UPDATE servers SET name = name WHERE id = ?", (record.server_id,)),
            Stmt(f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS.removeprefix('id, ')}) SELECT {placeholders(17)} "
                 "WHERE (SELECT count(*) FROM webhooks WHERE server_id = ? AND stream = ? AND legacy IS NULL) < ? "
                 "RETURNING id", (*values, record.server_id, record.stream, limit), fetch=True),
            *notice,
        ])
        if not rows[1]:
            return None
        self.webhooks_changed()
        return int(rows[1][0][0])

    async def update_webhook(self, record: WebhookRecord) -> None:
        await self.transact([Stmt(
            "UPDATE webhooks SET url = ?, http_auth_username = ?, http_auth_password = ?, http_headers = ?, "
            + ", ".join(f"{c} = ?" for c in _TRIGGER_COLUMNS) + " WHERE id = ? AND server_id = ? AND legacy IS NULL",
            (record.url, record.http_auth_username, record.http_auth_password, json.dumps(record.http_headers),
             *(int(record.triggers.get(c, False)) for c in _TRIGGER_COLUMNS), record.id, record.server_id)),
            *self.change_notice("webhooks")])
        self.webhooks_changed()

    async def delete_webhook(self, server_id: int, webhook_id: int, now: int) -> None:
        """Remove the webhook; its undelivered posts are dropped (state `cancelled`), its log kept."""
        await self.transact([
            Stmt(f"UPDATE webhook_posts SET state = 'cancelled', lease_owner = NULL, updated_at = ? "
                 f"WHERE webhook_id = ? AND state IN {_PENDING_POSTS}", (now, webhook_id)),
            Stmt("DELETE FROM webhooks WHERE id = ? AND server_id = ? AND legacy IS NULL", (webhook_id, server_id)),
            *self.change_notice("webhooks"),
        ])
        self.webhooks_changed()

    async def get_webhook(self, server_id: int, webhook_id: int) -> WebhookRecord | None:
        row = await self.query_one(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = ? AND server_id = ? "
                                   "AND legacy IS NULL", (webhook_id, server_id))
        return _webhook(row) if row else None

    async def list_webhooks(self, server_id: int, stream: str | None) -> list[WebhookRecord]:
        where, args = ("AND stream = ?", [server_id, stream]) if stream else ("", [server_id])
        rows = await self.query(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE server_id = ? AND legacy IS NULL "
                                f"{where} ORDER BY id", args)
        return [_webhook(r) for r in rows]

    async def servers_with_legacy_hooks(self) -> set[int]:
        return {int(r[0]) for r in await self.query("SELECT DISTINCT server_id FROM webhooks WHERE legacy IS NOT NULL")}

    async def list_all_webhooks(self) -> list[WebhookRecord]:
        """Every webhook of every server, the legacy hooks' too (for `WebhookHints`)."""
        rows = await self.query(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks ORDER BY id")
        return [_webhook(r) for r in rows]

    # -- the outbox ---------------------------------------------------------------------------

    async def claim_webhook_posts(self, owner: str, now: int, limit: int, lease_until: int) -> list[ClaimedPost]:
        """Lease due posts (an expired lease is due again), with their webhook's current settings.

        A read first: most polls find nothing due, and a read costs no write transaction (SQLite has one writer).
        """
        if not await self.query_one(f"SELECT 1 FROM webhook_posts WHERE state IN {_PENDING_POSTS} "
                                    "AND next_attempt_at <= ? LIMIT 1", (now,)):
            return []
        rows = (await self.transact([Stmt(
            "UPDATE webhook_posts SET state = 'sending', lease_owner = ?, attempts = attempts + 1, "
            "next_attempt_at = ?, updated_at = ? WHERE id IN (SELECT id FROM webhook_posts "
            f"WHERE state IN {_PENDING_POSTS} AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ? "
            f"{self.claim_lock_clause}) "
            "RETURNING id, webhook_id, event_id, record_type, payload, bounce_id, attempts, created_at, inbound_id",
            (owner, lease_until, now, now, limit), fetch=True)]))[0]
        if not rows:
            return []
        ids = sorted({r[1] for r in rows})
        hooks = {r[0]: _webhook(r) for r in await self.query(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id IN ({placeholders(len(ids))})", ids)}
        return [ClaimedPost(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], hooks.get(r[1]), inbound_id=r[8])
                for r in rows]

    async def record_webhook_posts(self, updates: Sequence[PostUpdate]) -> None:
        """Each attempt's result and log line, for the posts whose claim still holds (leased to that owner,
        for that attempt): a late result of a lost lease changes nothing and logs nothing. An Inbound post's
        message takes the status its post's state means (`domain.inbound.status_after_post`)."""
        finish = [Stmt("UPDATE webhook_posts SET state = ?, next_attempt_at = ?, lease_owner = NULL, updated_at = ? "
                       "WHERE id = ? AND lease_owner = ? AND attempts = ? RETURNING id",
                       (u.state, u.next_attempt_at, u.attempt.attempted_at, u.post.id, u.lease_owner, u.post.attempts),
                       fetch=True) for u in updates]

        def log_lines(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            held = {int(r[0]) for rows in results[-len(finish):] for r in rows}
            rows = [(u.post.id, u.attempt.attempted_at, u.attempt.outcome, u.attempt.status_code,
                     u.attempt.response_excerpt, u.attempt.duration_ms, u.attempt.error)
                    for u in updates if u.post.id in held]
            stmts = [Stmt("INSERT INTO webhook_attempts (post_id, attempted_at, outcome, status_code, "
                          "response_excerpt, duration_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          many=rows)] if rows else []
            for u in updates:
                if u.post.id in held and u.post.inbound_id is not None:
                    stmts.append(Stmt("UPDATE inbound_messages SET status = ?, reason = ? WHERE id = ?",
                                      (status_after_post(u.state).value, _inbound_reason(u), u.post.inbound_id)))
            return stmts

        await self.transact([*finish, Then(log_lines)])

    async def list_webhook_posts(self, webhook_id: int, offset: int, count: int) -> tuple[int, list[PostRecord]]:
        """The delivery log of one webhook, newest first, with every attempt of each post."""
        total = await self.query_one("SELECT count(*) FROM webhook_posts WHERE webhook_id = ?", (webhook_id,))
        rows = await self.query(
            "SELECT id, webhook_id, event_id, record_type, state, attempts, next_attempt_at, created_at, updated_at "
            "FROM webhook_posts WHERE webhook_id = ? ORDER BY id DESC LIMIT ? OFFSET ?", (webhook_id, count, offset))
        posts = [PostRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6] if r[4] in PENDING_POST_STATES else None,
                            r[7], r[8]) for r in rows]
        if posts:
            by_id = {p.id: p for p in posts}
            for a in await self.query(
                    "SELECT post_id, attempted_at, outcome, status_code, response_excerpt, duration_ms, error "
                    f"FROM webhook_attempts WHERE post_id IN ({placeholders(len(by_id))}) ORDER BY post_id, id",
                    list(by_id)):
                by_id[a[0]].history.append(PostAttempt(a[1], a[2], a[3], a[4], a[5], a[6]))
        return int(total[0]) if total else 0, posts

    async def queue_webhook_post(self, webhook_id: int, server_id: int, event_id: str, record_type: str,
                                 payload: str, now: int) -> int:
        """One post to one webhook, due now (the dashboard's test post): the dispatcher posts it like any other,
        and it is in the webhook's delivery log. Its id."""
        rows = (await self.transact([Stmt(
            "INSERT INTO webhook_posts (webhook_id, server_id, event_id, record_type, payload, state, attempts, "
            "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) RETURNING id",
            (webhook_id, server_id, event_id, record_type, payload, now, now, now), fetch=True)]))[0]
        return int(rows[0][0])

    async def redeliver_webhook_post(self, webhook_id: int, post_id: int, now: int) -> bool:
        """Queue one post again now, with a fresh retry schedule; False if it does not exist."""
        rows = (await self.transact([Stmt(
            "UPDATE webhook_posts SET state = 'pending', attempts = 0, next_attempt_at = ?, lease_owner = NULL, "
            "updated_at = ? WHERE id = ? AND webhook_id = ? RETURNING id", (now, now, post_id, webhook_id),
            fetch=True)]))[0]
        return bool(rows)


def _inbound_reason(update: PostUpdate) -> str | None:
    """Why an Inbound post left its message Blocked, Scheduled or Failed (None once it is posted)."""
    if update.state == "delivered":
        return None
    if update.state == "stopped" and update.attempt.status_code is not None:
        return f"The InboundHookUrl answered HTTP {update.attempt.status_code}: not posted again."
    return update.attempt.error or update.attempt.outcome
