"""The store: every query Posthouse makes, written once, over a dialect's transaction executor.

A write is a list of statements (`Stmt`) run in one transaction; a later statement may use a value
returned by an earlier one through `Ref`, and statements may be decided inside the transaction from
what earlier ones returned (`Then`). The SQLite executor runs such transactions on one writer
thread and commits whatever is pending together (group commit, docs/architecture.md §6); the PostgreSQL executor
runs them on a connection pool. SQL uses `?` placeholders; the PostgreSQL executor numbers them.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from posthouse.server.domain.messages import ComposedMessage
from posthouse.server.domain.stats import acceptance_increments, bounce_increment
from posthouse.server.domain.statuses import PENDING_STATES, DeliveryState, EventType, MessageStatus
from posthouse.server.store.activity import ActivityQueries
from posthouse.server.store.bulk import BulkQueries
from posthouse.server.store.domains import DomainQueries
from posthouse.server.store.feedback import BounceRecord, FeedbackQueries, Suppression, insert_bounce, suppress
from posthouse.server.store.fresh import FreshMessages, MessageRow
from posthouse.server.store.gauges import GaugeQueries
from posthouse.server.store.hits import HitQueries
from posthouse.server.store.idempotency import IdempotencyQueries
from posthouse.server.store.inbound import InboundQueries
from posthouse.server.store.operators import OperatorQueries
from posthouse.server.store.retention import RetentionQueries
from posthouse.server.store.sql import (
    LIKE_ESCAPE,
    Queries,
    Ref,
    Stmt,
    Then,
    like_contains,
    placeholders,
    resolve_refs,
)
from posthouse.server.store.stats import StatsQueries, bump_stats
from posthouse.server.store.templates import TemplateQueries
from posthouse.server.store.tracking import TrackingQueries
from posthouse.server.store.webhooks import WebhookEvent, WebhookQueries, webhook_fanout
from posthouse.server.store.workers import WorkerQueries

log = logging.getLogger(__name__)

__all__ = [
    "LIKE_ESCAPE", "BounceRecord", "Ref", "Stmt", "Suppression", "WebhookEvent", "like_contains", "placeholders",
    "resolve_refs",
]

# The pending states as SQL (the migrations' partial index `deliveries_due` lists the same ones).
PENDING = "(" + ", ".join(f"'{state.value}'" for state in PENDING_STATES) + ")"


# -- records ----------------------------------------------------------------------------------


@dataclass(slots=True)
class ServerRecord:
    id: int
    name: str
    settings: dict[str, Any]
    created_at: int


@dataclass(slots=True)
class TokenRecord:
    kind: str  # "server" | "account"
    server_id: int | None


@dataclass(slots=True)
class StreamRecord:
    server_id: int
    id: str
    name: str
    description: str | None
    stream_type: str
    unsubscribe_handling: str
    created_at: int
    updated_at: int | None
    archived_at: int | None


@dataclass(slots=True)
class MessageRecord:
    message_id: str
    server_id: int
    stream: str
    sender: str
    from_email: str
    subject: str
    tag: str | None
    to: list[dict[str, Any]]
    cc: list[dict[str, Any]]
    bcc: list[dict[str, Any]]
    recipients: list[str]
    metadata: dict[str, str]
    attachments: list[str]
    track_opens: bool
    track_links: str
    status: str
    sandboxed: bool
    received_at: int
    send_at: int | None = None  # scheduled: released at this time
    content: bytes | None = None


@dataclass(slots=True)
class EventRecord:
    message_id: str
    recipient: str
    type: str
    occurred_at: int
    details: dict[str, Any]
    bounce_id: int | None = None


@dataclass(slots=True)
class ClaimedDelivery:
    """A leased queue row with what delivery needs of its message."""

    id: int
    message_id: str
    recipient: str
    attempts: int
    server_id: int
    stream: str
    envelope_from: str
    received_at: int
    content: bytes
    tag: str | None
    subject: str
    sender: str
    sandboxed: bool
    metadata: dict[str, str] = field(default_factory=dict)
    send_at: int | None = None  # scheduled: its age for giving up counts from here
    tracked: bool = False  # opens or links tracked: the content may carry placeholders to personalise
    from_email: str = ""  # the From address: its domain's DKIM keys sign the message (issue 14)


@dataclass(slots=True)
class DeliveryUpdate:
    """The result of one attempt for one claimed row: new state, its event, maybe a bounce."""

    delivery: ClaimedDelivery
    lease_owner: str
    state: DeliveryState
    next_attempt_at: int
    reply: str
    event_type: EventType
    event_details: dict[str, Any]
    occurred_at: int
    bounce: BounceRecord | None = None
    webhook_events: list[WebhookEvent] = field(default_factory=list)  # bounce ones get the bounce's id
    suppression: Suppression | None = None  # a deactivating bounce's


@dataclass(slots=True)
class MessageFilter:
    stream: str | None = "outbound"
    recipient: str | None = None
    from_email: str | None = None
    tag: str | None = None
    status: str | None = None
    subject: str | None = None
    from_time: int | None = None
    to_time: int | None = None
    metadata: tuple[str, str] | None = None
    now: int = 0  # "Scheduled" means queued with send_at after this
    sandboxed: bool | None = None  # the dashboard's sandbox inbox lists sandboxed mail only


# A dashboard page's subject search tests the subjects of every message passing its other filters when they are
# at most _SUBJECT_SCAN, else of the newest _SUBJECT_WALK, before it asks the subject index
# (Store._page_by_recent_subjects; measured at a million messages: 18 ms to test 10,000, 6 ms for 4,000).
_SUBJECT_SCAN = 20_000
_SUBJECT_WALK = 4_000
_MESSAGE_COLUMNS = (
    "message_id, server_id, stream, sender, from_email, subject, tag, to_json, cc_json, bcc_json, "
    "recipients, metadata, attachments, track_opens, track_links, status, sandboxed, received_at, send_at"
)
_STREAM_COLUMNS = (
    "server_id, id, name, description, stream_type, unsubscribe_handling, created_at, updated_at, archived_at"
)


def _message_record(row: Sequence[Any], content: bytes | None = None) -> MessageRecord:
    return MessageRecord(
        message_id=row[0], server_id=row[1], stream=row[2], sender=row[3], from_email=row[4],
        subject=row[5], tag=row[6], to=json.loads(row[7]), cc=json.loads(row[8]), bcc=json.loads(row[9]),
        recipients=json.loads(row[10]), metadata=json.loads(row[11]), attachments=json.loads(row[12]),
        track_opens=bool(row[13]), track_links=row[14], status=row[15], sandboxed=bool(row[16]),
        received_at=row[17], send_at=row[18], content=content,
    )


class Store(FeedbackQueries, WebhookQueries, TemplateQueries, IdempotencyQueries, BulkQueries, WorkerQueries,
            TrackingQueries, StatsQueries, HitQueries, DomainQueries, RetentionQueries, InboundQueries, GaugeQueries,
            OperatorQueries, ActivityQueries, Queries):
    """Every query Posthouse makes; a dialect subclass supplies the executor."""

    dialect: str
    # Told after each group commit: (callers' writes in it, seconds it took). Set by the composition root for
    # the metrics; called on the SQLite writer thread, so it must be cheap and thread-safe.
    on_commit: Callable[[int, float], None] | None = None
    # What this process's worker will claim next, kept from the acceptance (store/fresh.py); made at first use.
    _fresh_messages: FreshMessages | None = None

    @property
    def fresh_messages(self) -> FreshMessages:
        if self._fresh_messages is None:
            self._fresh_messages = FreshMessages()
        return self._fresh_messages

    @property
    def pending_writes(self) -> int:
        """Writes queued for the writer and not yet taken into a transaction."""
        return 0

    # -- executor (dialect) -------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def migrate(self, on_applied: Callable[[str, int, int], None] | None = None) -> list[str]:
        """Apply pending numbered migrations; return the names applied. `on_applied(name, done, pending)`
        after each (the CLI's progress bar)."""

    def take_change(self, kind: str) -> None:
        """Another process announced that `kind` changed: the hints reload at their next use."""
        if kind == "suppressions":
            self.suppression_epoch += 1
        elif kind == "webhooks":
            self.webhook_epoch += 1
        elif kind == "domains":
            self.domain_epoch += 1

    async def listen_for_work(self, callback: Callable[[], None]) -> None:
        """Call `callback` when another process commits new work; a no-op where there is no channel
        (SQLite: roles that share one SQLite file fall back to polling)."""
        return None

    # -- secrets ------------------------------------------------------------------------------

    async def secret(self, name: str, candidate: str) -> str:
        """The installation's secret `name`; `candidate` becomes it if there is none yet (first node wins)."""
        await self.transact([Stmt("INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                                  (name, candidate))])
        row = await self.query_one("SELECT value FROM secrets WHERE name = ?", (name,))
        assert row is not None
        return str(row[0])

    # -- servers and tokens -------------------------------------------------------------------

    async def create_server(
        self, name: str, settings: dict[str, Any], token_hash: str, token_hint: str, now: int,
        streams: Iterable[tuple[str, str, str, str]], hooks: Callable[[Any], list[Stmt]] | None = None,
    ) -> int:
        """Create a server with its first token and default streams (id, name, type, unsubscribe), and the
        statements `hooks(server id)` gives (its legacy hooks), in one transaction."""
        stmts = [
            Stmt("INSERT INTO servers (name, settings, created_at) VALUES (?, ?, ?) RETURNING id",
                 (name, json.dumps(settings, ensure_ascii=False), now), fetch=True),
            Stmt("INSERT INTO api_tokens (token_hash, kind, server_id, hint, created_at) VALUES (?, 'server', ?, ?, ?)",
                 (token_hash, Ref(0), token_hint, now)),
        ]
        stmts.extend(
            Stmt(f"INSERT INTO message_streams ({_STREAM_COLUMNS}) VALUES (?, ?, ?, NULL, ?, ?, ?, NULL, NULL)",
                 (Ref(0), stream_id, stream_name, stream_type, unsubscribe, now))
            for stream_id, stream_name, stream_type, unsubscribe in streams
        )
        hook_stmts = hooks(Ref(0)) if hooks is not None else []
        results = await self.transact([*stmts, *hook_stmts])
        if hook_stmts:
            self.webhooks_changed()
        return int(results[0][0][0])

    async def add_token(self, token_hash: str, kind: str, server_id: int | None, hint: str, now: int) -> None:
        await self.transact([Stmt(
            "INSERT INTO api_tokens (token_hash, kind, server_id, hint, created_at) VALUES (?, ?, ?, ?, ?)",
            (token_hash, kind, server_id, hint, now))])

    async def find_token(self, token_hash: str, now: int | None = None) -> TokenRecord | None:
        """The token with this hash, unless it was rotated and its grace period ended before `now`."""
        row = await self.query_one("SELECT kind, server_id, expires_at FROM api_tokens WHERE token_hash = ?",
                                   (token_hash,))
        if row is None or (row[2] is not None and now is not None and row[2] <= now):
            return None
        return TokenRecord(row[0], row[1])

    async def count_tokens(self, kind: str) -> int:
        row = await self.query_one("SELECT count(*) FROM api_tokens WHERE kind = ?", (kind,))
        return int(row[0]) if row else 0

    async def token_hints(self, server_id: int) -> list[str]:
        rows = await self.query(
            "SELECT hint FROM api_tokens WHERE server_id = ? AND expires_at IS NULL ORDER BY created_at", (server_id,))
        return [r[0] for r in rows]

    async def rotate_tokens(self, kind: str, server_id: int | None, token_hash: str, hint: str, now: int,
                            revoke_at: int) -> int:
        """A new token of `kind` (for `server_id`), and every other token of that kind (and server) ending at
        `revoke_at`: deleted now when that is not after `now`, else kept until then. One transaction, so
        there is no moment without a valid token. How many tokens were rotated out."""
        owner = "server_id = ?" if server_id is not None else "server_id IS NULL"
        args: list[Any] = [kind, server_id] if server_id is not None else [kind]
        if revoke_at <= now:
            retire = Stmt(f"DELETE FROM api_tokens WHERE kind = ? AND {owner} RETURNING token_hash", args, fetch=True)
        else:
            retire = Stmt(f"UPDATE api_tokens SET expires_at = ? WHERE kind = ? AND {owner} AND (expires_at IS NULL "
                          "OR expires_at > ?) RETURNING token_hash", [revoke_at, *args, revoke_at], fetch=True)
        results = await self.transact([retire, Stmt(
            "INSERT INTO api_tokens (token_hash, kind, server_id, hint, created_at) VALUES (?, ?, ?, ?, ?)",
            (token_hash, kind, server_id, hint, now))])
        return len(results[0])

    async def get_server(self, server_id: int) -> ServerRecord | None:
        row = await self.query_one("SELECT id, name, settings, created_at FROM servers WHERE id = ?", (server_id,))
        return ServerRecord(row[0], row[1], json.loads(row[2]), row[3]) if row else None

    async def get_server_by_name(self, name: str) -> ServerRecord | None:
        row = await self.query_one(
            "SELECT id, name, settings, created_at FROM servers WHERE lower(name) = lower(?)", (name,))
        return ServerRecord(row[0], row[1], json.loads(row[2]), row[3]) if row else None

    async def list_servers(self, offset: int, count: int, name: str | None) -> tuple[int, list[ServerRecord]]:
        where, args = (f"WHERE lower(name) LIKE ? {LIKE_ESCAPE}", [like_contains(name.lower())]) if name else ("", [])
        total = await self.query_one(f"SELECT count(*) FROM servers {where}", args)
        rows = await self.query(
            f"SELECT id, name, settings, created_at FROM servers {where} ORDER BY id LIMIT ? OFFSET ?",
            [*args, count, offset])
        return int(total[0]) if total else 0, [ServerRecord(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    async def update_server(self, server_id: int, name: str, settings: dict[str, Any],
                            extra: Sequence[Stmt] = ()) -> None:
        """New name and settings; `extra` statements (its legacy hooks) commit with them."""
        await self.transact([Stmt("UPDATE servers SET name = ?, settings = ? WHERE id = ?",
                                  (name, json.dumps(settings, ensure_ascii=False), server_id)), *extra])
        if extra:
            self.webhooks_changed()

    async def delete_server(self, server_id: int) -> None:
        """Remove a server and its tokens, streams and webhooks; its undelivered mail and webhook posts are
        cancelled, not sent."""
        await self.transact([
            Stmt(f"UPDATE deliveries SET state = 'cancelled', lease_owner = NULL WHERE state IN {PENDING} "
                 "AND message_id IN (SELECT message_id FROM messages WHERE server_id = ?)", (server_id,)),
            Stmt("DELETE FROM api_tokens WHERE server_id = ?", (server_id,)),
            Stmt("UPDATE webhook_posts SET state = 'cancelled', lease_owner = NULL WHERE state IN "
                 "('pending', 'sending') AND webhook_id IN (SELECT id FROM webhooks WHERE server_id = ?)",
                 (server_id,)),
            Stmt("DELETE FROM webhooks WHERE server_id = ?", (server_id,)),
            Stmt("DELETE FROM message_streams WHERE server_id = ?", (server_id,)),
            Stmt("DELETE FROM servers WHERE id = ?", (server_id,)),
            *self.change_notice("webhooks"),
        ])
        self.webhooks_changed()

    # -- message streams ----------------------------------------------------------------------

    async def list_streams(self, server_id: int) -> list[StreamRecord]:
        rows = await self.query(
            f"SELECT {_STREAM_COLUMNS} FROM message_streams WHERE server_id = ? ORDER BY created_at, id",
            (server_id,))
        return [StreamRecord(*r) for r in rows]

    async def get_stream(self, server_id: int, stream_id: str) -> StreamRecord | None:
        row = await self.query_one(
            f"SELECT {_STREAM_COLUMNS} FROM message_streams WHERE server_id = ? AND id = ?",
            (server_id, stream_id))
        return StreamRecord(*row) if row else None

    async def create_stream(self, record: StreamRecord) -> None:
        await self.transact([Stmt(
            f"INSERT INTO message_streams ({_STREAM_COLUMNS}) VALUES ({placeholders(9)})",
            (record.server_id, record.id, record.name, record.description, record.stream_type,
             record.unsubscribe_handling, record.created_at, record.updated_at, record.archived_at))])

    async def update_stream(self, record: StreamRecord) -> None:
        await self.transact([Stmt(
            "UPDATE message_streams SET name = ?, description = ?, unsubscribe_handling = ?, updated_at = ?, "
            "archived_at = ? WHERE server_id = ? AND id = ?",
            (record.name, record.description, record.unsubscribe_handling, record.updated_at,
             record.archived_at, record.server_id, record.id))])

    # -- acceptance (docs/architecture.md §2) ---------------------------------------------------------------

    async def insert_messages(self, server_id: int, messages: Sequence[ComposedMessage], *,
                              sandboxed: bool, now: int, suppressed: Mapping[str, set[str]] | None = None,
                              bounces: Sequence[BounceRecord] = (), bounce_events: Sequence[WebhookEvent] = (),
                              extra: Sequence[Stmt] = ()) -> None:
        """One durable transaction: message rows, per-recipient queue rows, `Queued` events, and the stats
        counters of what was accepted (docs/architecture.md §6).

        `suppressed` (message id → recipients) get a `suppressed` row instead of a queued one, and
        `bounces` (SMTPApiError records for them, over SMTP) are recorded with their `Bounced` events
        and, where given, the Bounce webhook post of each (`bounce_events`, one per bounce).
        `extra` statements join the transaction (an idempotency key's answer).
        """
        message_rows = []
        kept: list[MessageRow] = []  # for this process's worker (store/fresh.py): queued now, not scheduled
        delivery_rows = []
        event_rows = []
        metadata_rows: list[tuple[str, int, str, str]] = []
        link_rows: list[tuple[str, int, str, str, str | None]] = []
        counted = [bounce_increment(b.server_id, b.stream, b.tag, b.type, b.bounced_at) for b in bounces]
        for m in messages:
            received = int(m.received_at.timestamp() * 1_000_000)
            send_at = int(m.send_at.timestamp() * 1_000_000) if m.send_at is not None else None
            # A scheduled message's rows fall due at its time: the worker's ordinary claim releases it.
            due = max(received, send_at) if send_at is not None else received
            recipients = m.recipients
            skipped = suppressed.get(m.message_id, set()) if suppressed else set()
            status = MessageStatus.SENT if skipped and all(r.lower() in skipped for r in recipients) \
                else MessageStatus.QUEUED
            message_rows.append((
                m.message_id, server_id, m.stream, str(m.sender), m.sender.email, m.envelope_from,
                m.subject, m.tag, m.addresses_json(m.to), m.addresses_json(m.cc), m.addresses_json(m.bcc),
                json.dumps(recipients, ensure_ascii=False),
                json.dumps(m.metadata, ensure_ascii=False) if m.metadata else "{}",
                json.dumps(m.attachment_names, ensure_ascii=False) if m.attachment_names else "[]",
                int(bool(m.track_opens)), m.track_links or "None", status.value,
                int(sandboxed), received, len(m.content), m.content, send_at,
            ))
            if send_at is None and status is MessageStatus.QUEUED:  # the columns `_claimed` selects
                row = message_rows[-1]
                kept.append((m.message_id, server_id, m.stream, m.envelope_from, received, m.content, m.tag,
                             m.subject, row[3], int(sandboxed), row[12], None, row[14], row[15], m.sender.email))
            metadata_rows.extend((m.message_id, server_id, key, value) for key, value in m.metadata.items())
            link_rows.extend((m.message_id, link.link, link.url, link.location, link.written_if_different)
                             for link in m.links)
            counted.extend(acceptance_increments(
                server_id, m.stream, m.tag, track_opens=m.track_opens, track_links=m.track_links,
                tracked_links=m.tracked_links, sent=sum(r.lower() not in skipped for r in recipients),
                received_at=received))
            for rcpt in recipients:
                state = DeliveryState.SUPPRESSED if rcpt.lower() in skipped else DeliveryState.QUEUED
                delivery_rows.append((m.message_id, rcpt, state.value, 0, due, now, now))
                event_rows.append((m.message_id, server_id, rcpt, EventType.QUEUED.value, received, "{}"))
        bounce_stmts: list[Stmt] = []
        events: Sequence[WebhookEvent | None] = bounce_events or [None] * len(bounces)
        for b, event in zip(bounces, events, strict=True):
            ref = Ref(len(bounce_stmts))
            bounce_stmts.append(insert_bounce(b))
            bounce_stmts.append(Stmt(
                "INSERT INTO events (message_id, server_id, recipient, type, occurred_at, details, bounce_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (b.message_id, b.server_id, b.email, EventType.BOUNCED.value, b.bounced_at,
                 json.dumps({"Summary": f"{b.description} {b.details}"}), ref)))
            if event is not None:
                event.bounce_id = ref
                bounce_stmts.extend(webhook_fanout([event]))
        # Bounces first, so their `Ref`s count from the start of the transaction.
        stmts = [
            *bounce_stmts,
            Stmt("INSERT INTO messages (message_id, server_id, stream, sender, from_email, envelope_from, "
                 "subject, tag, to_json, cc_json, bcc_json, recipients, metadata, attachments, track_opens, "
                 f"track_links, status, sandboxed, received_at, size, content, send_at) VALUES ({placeholders(22)})",
                 many=message_rows),
            Stmt("INSERT INTO deliveries (message_id, recipient, state, attempts, next_attempt_at, created_at, "
                 "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", many=delivery_rows),
            Stmt("INSERT INTO events (message_id, server_id, recipient, type, occurred_at, details) "
                 "VALUES (?, ?, ?, ?, ?, ?)", many=event_rows),
            Stmt("INSERT INTO message_metadata (message_id, server_id, key, value) VALUES (?, ?, ?, ?)",
                 many=metadata_rows),
            # Tracked links (issue 13), always in the list so that every acceptance has one shape (group commit).
            Stmt("INSERT INTO message_links (message_id, link, url, location, written) VALUES (?, ?, ?, ?, ?)",
                 many=link_rows),
            *self.subject_index([(m.subject, m.message_id) for m in messages]),
            *bump_stats(counted),
            *extra,
            *self.work_notice(),
        ]
        # Kept before the commit, so that no claim can find the rows before the cache has them; dropped if
        # the commit fails.
        self.fresh_messages.put(kept)
        try:
            await self.transact(stmts)
        except BaseException:
            self.fresh_messages.discard(row[0] for row in kept)
            raise

    def subject_index(self, rows: list[tuple[str, str]]) -> list[Stmt]:
        """Statements that index (subject, message_id) pairs for subject search; PostgreSQL's
        trigram index needs none (migration 0003)."""
        return []

    def subject_filter(self, text: str) -> tuple[str, list[Any]]:
        """A WHERE clause for messages whose subject contains `text`, case-insensitively, through the
        dialect's subject index where it needs one named."""
        return self.subject_test(text)

    @staticmethod
    def subject_test(text: str) -> tuple[str, list[Any]]:
        """The same test on a row's own subject, no index involved."""
        return f"lower(subject) LIKE ? {LIKE_ESCAPE}", [like_contains(text.lower())]

    # -- the queue (docs/architecture.md §3) ----------------------------------------------------------------

    async def claim_deliveries(self, owner: str, now: int, limit: int, lease_until: int,
                               whole_messages: bool = False) -> list[ClaimedDelivery]:
        """Lease up to `limit` due rows. An expired lease (`sending` past its time) is due again.

        While leased, `next_attempt_at` holds the lease expiry, so one partial index serves both
        due work and expired leases. Claiming counts as an attempt; rows are never deleted here.
        """
        return await self._claimed((await self.transact(
            [self._claim_stmt(owner, now, limit, lease_until, whole_messages)]))[0])

    def _claim_stmt(self, owner: str, now: int, limit: int, lease_until: int, whole_messages: bool = False) -> Stmt:
        """`whole_messages`: with the first `limit` due rows, every other due row of their messages, so the
        rows of one message that fell due together are sent together (one SMTP transaction without VERP)."""
        if whole_messages:
            return Stmt(
                "UPDATE deliveries SET state = 'sending', lease_owner = ?, attempts = attempts + 1, "
                "next_attempt_at = ?, updated_at = ? WHERE id IN (SELECT id FROM deliveries "
                f"WHERE state IN {PENDING} AND next_attempt_at <= ? AND message_id IN (SELECT message_id "
                f"FROM deliveries WHERE state IN {PENDING} AND next_attempt_at <= ? ORDER BY next_attempt_at "
                f"LIMIT ? {self.claim_lock_clause}) {self.claim_lock_clause}) "
                "RETURNING id, message_id, recipient, attempts",
                (owner, lease_until, now, now, now, limit), fetch=True)
        return Stmt(
            "UPDATE deliveries SET state = 'sending', lease_owner = ?, attempts = attempts + 1, "
            "next_attempt_at = ?, updated_at = ? WHERE id IN (SELECT id FROM deliveries "
            f"WHERE state IN {PENDING} AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ? "
            f"{self.claim_lock_clause}) RETURNING id, message_id, recipient, attempts",
            (owner, lease_until, now, now, limit), fetch=True)

    async def release_claims(self, owner: str, ids: Sequence[int], now: int) -> None:
        """Give back rows claimed but never attempted (a stopping worker's prefetched claims): due at once,
        the claim's attempt not counted."""
        if ids:
            await self.transact([Stmt(
                "UPDATE deliveries SET state = CASE WHEN attempts > 1 THEN 'deferred' ELSE 'queued' END, "
                "attempts = attempts - 1, lease_owner = NULL, next_attempt_at = ?, updated_at = ? "
                f"WHERE id IN ({placeholders(len(ids))}) AND lease_owner = ? AND state = 'sending'",
                (now, now, *ids, owner))])

    async def _claimed(self, rows: Sequence[Sequence[Any]]) -> list[ClaimedDelivery]:
        """The claimed rows (id, message_id, recipient, attempts) with what delivery needs of their messages."""
        if not rows:
            return []
        messages = self.fresh_messages.take(sorted({r[1] for r in rows}))
        ids = sorted({r[1] for r in rows if r[1] not in messages})
        if ids:
            messages.update((m[0], m) for m in await self.query(
                "SELECT message_id, server_id, stream, envelope_from, received_at, content, tag, subject, sender, "
                "sandboxed, metadata, send_at, track_opens, track_links, from_email "
                f"FROM messages WHERE message_id IN ({placeholders(len(ids))})", ids))
        claimed = []
        for delivery_id, message_id, recipient, attempts in rows:
            m = messages[message_id]
            claimed.append(ClaimedDelivery(
                id=delivery_id, message_id=message_id, recipient=recipient, attempts=attempts,
                server_id=m[1], stream=m[2], envelope_from=m[3], received_at=m[4], content=bytes(m[5]),
                tag=m[6], subject=m[7], sender=m[8], sandboxed=bool(m[9]),
                metadata=json.loads(m[10]) if m[10] != "{}" else {}, send_at=m[11],
                tracked=bool(m[12]) or m[13] != "None", from_email=m[14]))
        return claimed

    async def record_attempts(self, updates: Sequence[DeliveryUpdate],
                              claim: tuple[str, int, int, int, bool] | None = None) -> list[ClaimedDelivery]:
        """Finish one attempt per row in one transaction: state, event, bounce, message status; with
        `claim` (owner, now, limit, lease_until), also claim the next rows in that transaction and return
        them (one commit for both, where two would each wait for their own fsync).

        A result counts only if its claim still holds: the row is still leased to that owner for that
        attempt (the claim's token). The lease check and the writes that follow from it (event, bounce,
        suppression, webhook posts) are one transaction, so a worker whose lease ran out while it
        was sending (paused, partitioned, slower than the lease) leaves no trace: the row's new
        holder alone reports it.
        """
        finish = self.finish_deliveries([
            (u.state.value, u.next_attempt_at, u.occurred_at, u.reply, u.delivery.id, u.lease_owner,
             u.delivery.attempts) for u in updates])
        held: list[list[DeliveryUpdate]] = []

        def consequences(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            ids = {int(r[0]) for rows in results[-len(finish):] for r in rows}
            held.append([u for u in updates if u.delivery.id in ids])
            notice = self.change_notice("suppressions") if any(u.suppression for u in held[-1]) else []
            return [*self._attempt_consequences(held[-1], base=len(results)), *notice]

        results = await self.transact([*finish, Then(consequences),
                                       *([self._claim_stmt(*claim)] if claim is not None else [])])
        current = held[-1] if held else []  # the last build is the one committed (a failed group runs again alone)
        if len(current) < len(updates):
            log.warning("%d delivery results not recorded: their claim no longer held (the lease ran out and the "
                        "row was claimed again, or the result was already recorded)", len(updates) - len(current))
        if any(u.suppression is not None for u in current):
            self.suppressions_changed()
        return await self._claimed(results[-1]) if claim is not None else []

    def _attempt_consequences(self, updates: Sequence[DeliveryUpdate], base: int) -> list[Stmt]:
        """What recorded attempts write besides their rows' state; `Ref`s count from `base`."""
        stmts: list[Stmt] = []
        plain_events = []
        plain_webhooks: list[WebhookEvent] = []
        for u in updates:
            d = u.delivery
            if u.bounce is None:
                plain_events.append((d.message_id, d.server_id, d.recipient, u.event_type.value, u.occurred_at,
                                     json.dumps(u.event_details)))
                plain_webhooks.extend(u.webhook_events)
                continue
            ref = Ref(base + len(stmts))
            stmts.append(insert_bounce(u.bounce))
            # The Bounced event names its bounce record (docs/postmark-api.md §4.4 `BounceID`).
            stmts.append(Stmt(
                "INSERT INTO events (message_id, server_id, recipient, type, occurred_at, details, bounce_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (d.message_id, d.server_id, d.recipient, u.event_type.value, u.occurred_at,
                 json.dumps(u.event_details), ref)))
            for event in u.webhook_events:
                event.bounce_id = ref
            stmts.extend(webhook_fanout(u.webhook_events))
            if u.suppression is not None:
                stmts.extend(suppress(u.suppression, ref))
        if plain_events:
            stmts.append(Stmt("INSERT INTO events (message_id, server_id, recipient, type, occurred_at, details) "
                              "VALUES (?, ?, ?, ?, ?, ?)", many=plain_events))
        stmts.extend(webhook_fanout(plain_webhooks))
        stmts.extend(bump_stats(bounce_increment(b.server_id, b.stream, b.tag, b.type, b.bounced_at)
                                for u in updates if (b := u.bounce) is not None))
        finished = sorted({u.delivery.message_id for u in updates if u.state not in PENDING_STATES})
        if finished and self.row_lock_clause:
            # Two transactions finishing the last two recipients of one message would each see the other's
            # row still pending (READ COMMITTED) and neither mark it Sent. Locking the message rows first, in
            # one order, makes the second wait for the first's commit; its next statement then sees it.
            stmts.append(Stmt(f"SELECT message_id FROM messages WHERE message_id IN ({placeholders(len(finished))}) "
                              f"ORDER BY message_id {self.row_lock_clause}", finished))
        if finished:
            stmts.append(Stmt(
                f"UPDATE messages SET status = 'Sent' WHERE message_id IN ({placeholders(len(finished))}) "
                f"AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = messages.message_id "
                f"AND d.state IN {PENDING})", finished))
        return stmts

    @abstractmethod
    def finish_deliveries(self, rows: list[tuple[str, int, int, str, int, str, int]]) -> list[Stmt]:
        """Set (state, next_attempt_at, updated_at, last_reply) of rows (…, id, lease_owner, attempts)
        whose claim still holds, returning their ids: a late result of a lost lease changes nothing.
        Each dialect writes it as one statement per batch (`UPDATE … FROM` a list of rows)."""

    async def next_due_time(self) -> int | None:
        row = await self.query_one(f"SELECT min(next_attempt_at) FROM deliveries WHERE state IN {PENDING}")
        return int(row[0]) if row and row[0] is not None else None

    async def count_deliveries(self) -> dict[str, int]:
        rows = await self.query("SELECT state, count(*) FROM deliveries GROUP BY state")
        return {r[0]: int(r[1]) for r in rows}

    # -- message history ----------------------------------------------------------------------

    async def search_messages(self, server_id: int, f: MessageFilter, offset: int, count: int
                              ) -> tuple[int, list[MessageRecord]]:
        where, args = self._message_where(server_id, f)
        total = await self.query_one(f"SELECT count(*) FROM messages WHERE {where}", args)
        rows = await self.query(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} "
            "ORDER BY received_at DESC LIMIT ? OFFSET ?", [*args, count, offset])
        return int(total[0]) if total else 0, [_message_record(r) for r in rows]

    async def page_messages(self, server_id: int, f: MessageFilter, offset: int, count: int) -> list[MessageRecord]:
        """A page of the search without its count (the dashboard's list: counting a million rows costs more
        than the page's whole budget, issue 15)."""
        if f.subject:
            page = await self._page_by_recent_subjects(server_id, f, offset, count)
            if page is not None:
                return page
        where, args = self._message_where(server_id, f)
        rows = await self.query(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} "
            "ORDER BY received_at DESC LIMIT ? OFFSET ?", [*args, count, offset])
        return [_message_record(r) for r in rows]

    async def _page_by_recent_subjects(self, server_id: int, f: MessageFilter, offset: int, count: int
                                       ) -> list[MessageRecord] | None:
        """The page of a subject search found by testing the subjects of the messages that pass the other
        filters, newest first: all of them when they are at most `_SUBJECT_SCAN`, else the newest
        `_SUBJECT_WALK`. None when that walk holds too few matches (older ones may exist: the subject index
        must find them) or the page lies deeper than it.

        The subject index (trigrams) finds every message whose subject holds the text, then keeps those that
        pass the other filters, newest first. A text common in subjects ("order 1": a ninth of a million
        messages) makes that slow however few the other filters leave (a tag, a recipient, a day), so the
        dashboard's page first walks the other filters' own index in time order (docs/architecture.md §6,
        BENCHMARKS.md "Dashboard pages")."""
        others, other_args = self._message_where(server_id, replace(f, subject=None))
        passing = await self.query_one(f"SELECT count(*) FROM (SELECT 1 FROM messages WHERE {others} LIMIT ?) AS o",
                                       [*other_args, _SUBJECT_SCAN + 1])
        complete = passing is not None and int(passing[0]) <= _SUBJECT_SCAN
        if not complete and offset + count > _SUBJECT_WALK:
            return None
        subject, subject_args = self.subject_test(f.subject or "")
        rows = await self.query(
            f"SELECT {_MESSAGE_COLUMNS} FROM (SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {others} "
            f"ORDER BY received_at DESC LIMIT ?) AS recent WHERE {subject} ORDER BY received_at DESC LIMIT ? OFFSET ?",
            [*other_args, _SUBJECT_SCAN if complete else _SUBJECT_WALK, *subject_args, count, offset])
        if len(rows) < count and not complete:
            return None
        return [_message_record(r) for r in rows]

    def _message_where(self, server_id: int, f: MessageFilter) -> tuple[str, list[Any]]:
        clauses = ["server_id = ?"]
        args: list[Any] = [server_id]
        if f.stream:
            clauses.append("stream = ?")
            args.append(f.stream)
        if f.recipient:
            # Exact, case-insensitive, on any of To/Cc/Bcc: the queue has a row per recipient (indexed).
            clauses.append("message_id IN (SELECT message_id FROM deliveries WHERE lower(recipient) = ?)")
            args.append(f.recipient.strip().lower())
        if f.from_email:
            clauses.append("lower(from_email) = ?")
            args.append(f.from_email.strip().lower())
        if f.tag:
            clauses.append("tag = ?")
            args.append(f.tag)
        if f.status == MessageStatus.SCHEDULED:
            clauses.append("status = 'Queued' AND send_at > ?")
            args.append(f.now)
        elif f.status == MessageStatus.QUEUED:
            clauses.append("status = 'Queued' AND (send_at IS NULL OR send_at <= ?)")
            args.append(f.now)
        elif f.status:
            clauses.append("status = ?")
            args.append(f.status)
        if f.subject:
            clause, subject_args = self.subject_filter(f.subject)
            clauses.append(clause)
            args.extend(subject_args)
        if f.from_time is not None:
            clauses.append("received_at >= ?")
            args.append(f.from_time)
        if f.to_time is not None:
            clauses.append("received_at <= ?")
            args.append(f.to_time)
        if f.metadata:
            clauses.append("message_id IN (SELECT message_id FROM message_metadata WHERE server_id = ? "
                           "AND key = ? AND value = ?)")
            args.extend([server_id, f.metadata[0], f.metadata[1]])
        if f.sandboxed is not None:
            # A literal, not a parameter: the partial index messages_sandboxed applies only to `sandboxed = 1`.
            clauses.append("sandboxed = 1" if f.sandboxed else "sandboxed = 0")
        return " AND ".join(clauses), args

    async def get_message(self, server_id: int, message_id: str, *, with_content: bool = False
                          ) -> MessageRecord | None:
        columns = _MESSAGE_COLUMNS + (", content" if with_content else "")
        row = await self.query_one(
            f"SELECT {columns} FROM messages WHERE server_id = ? AND message_id = ?",
            (server_id, message_id))
        if row is None:
            return None
        return _message_record(row, bytes(row[19]) if with_content else None)

    # -- scheduled messages (issue 6) ----------------------------------------------------------

    async def cancel_message(self, server_id: int, message_id: str, now: int) -> tuple[list[str], list[str]]:
        """Cancel a message's rows not yet claimed by a worker: (cancelled recipients, recipients already
        released). Atomic against the claim (one writer on SQLite; row locks and SKIP LOCKED on
        PostgreSQL), so a row is either cancelled here or delivered, never both. What the cancelled
        recipients added to the stats at acceptance is taken back in the same transaction."""
        record = await self.get_message(server_id, message_id)
        links = await self.query_one("SELECT count(*) FROM message_links WHERE message_id = ?", (message_id,))

        def uncount(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            if record is None:
                return []
            return bump_stats(acceptance_increments(
                server_id, record.stream, record.tag, track_opens=record.track_opens, track_links=record.track_links,
                tracked_links=int(links[0]) if links else 0, sent=-len(results[0]), received_at=record.received_at))

        results = await self.transact([
            Stmt("UPDATE deliveries SET state = 'cancelled', updated_at = ? WHERE message_id = ? "
                 "AND state IN ('queued', 'deferred') AND message_id IN (SELECT message_id FROM messages "
                 "WHERE server_id = ? AND message_id = ?) RETURNING recipient",
                 (now, message_id, server_id, message_id), fetch=True),
            Stmt("SELECT recipient FROM deliveries WHERE message_id = ? AND state NOT IN ('cancelled', 'suppressed')",
                 (message_id,), fetch=True),
            Stmt("UPDATE messages SET status = 'Cancelled' WHERE server_id = ? AND message_id = ? AND NOT EXISTS "
                 "(SELECT 1 FROM deliveries d WHERE d.message_id = messages.message_id "
                 "AND d.state NOT IN ('cancelled', 'suppressed'))", (server_id, message_id)),
            Then(uncount),
        ])
        return sorted(r[0] for r in results[0]), sorted(r[0] for r in results[1])

    async def reschedule_message(self, server_id: int, message_id: str, send_at: int, now: int) -> int:
        """Move a message's unreleased rows to `send_at`; the number of rows moved (0: none left)."""
        self.fresh_messages.discard([message_id])
        results = await self.transact([
            Stmt("UPDATE deliveries SET next_attempt_at = ?, updated_at = ? WHERE message_id = ? "
                 "AND state = 'queued' AND attempts = 0 AND message_id IN (SELECT message_id FROM messages "
                 "WHERE server_id = ? AND message_id = ?) RETURNING id",
                 (max(send_at, now), now, message_id, server_id, message_id), fetch=True),
            Stmt("UPDATE messages SET send_at = ? WHERE server_id = ? AND message_id = ? AND EXISTS "
                 "(SELECT 1 FROM deliveries d WHERE d.message_id = messages.message_id AND d.state = 'queued' "
                 "AND d.attempts = 0)", (send_at, server_id, message_id)),
            *self.work_notice(),
        ])
        return len(results[0])

    async def find_delivery(self, delivery_id: int) -> tuple[str, str] | None:
        """(message id, recipient) of a queue row (a bounce's return path names the row)."""
        if not 0 < delivery_id < 2**63:
            return None
        row = await self.query_one("SELECT message_id, recipient FROM deliveries WHERE id = ?", (delivery_id,))
        return (str(row[0]), str(row[1])) if row else None

    async def find_message(self, message_id: str) -> MessageRecord | None:
        """A message by id alone, whichever server sent it (a bounce names only the message)."""
        row = await self.query_one(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id = ?", (message_id,))
        return _message_record(row) if row else None

    async def list_message_links(self, message_id: str) -> list[tuple[int, str, str, str | None]]:
        """(link, url, location, written) of a message's tracked links, by number; `written` is None where
        the link was written as its URL."""
        rows = await self.query(
            "SELECT link, url, location, written FROM message_links WHERE message_id = ? ORDER BY link", (message_id,))
        return [(int(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]

    async def list_events(self, message_id: str) -> list[EventRecord]:
        rows = await self.query(
            "SELECT message_id, recipient, type, occurred_at, details, bounce_id FROM events "
            "WHERE message_id = ? ORDER BY occurred_at, id", (message_id,))
        return [EventRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]
