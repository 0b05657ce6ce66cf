"""Retention and data removal: the queries that delete old or requested rows, a bounded batch per transaction.

Every delete here is one short transaction over at most a batch of rows found by an index (the writer is
never held long, docs/architecture.md §6), and is safe to run on several nodes at once: a row deleted twice
is deleted once. Finding what to delete is a read on a snapshot; the delete re-checks what matters (no
pending delivery, a post no longer due) so a row that changed in between is left for a later pass.
`stats_daily` is never touched: aggregates are kept for ever, as Postmark keeps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posthouse.server.domain.statuses import PENDING_STATES
from posthouse.server.store.sql import LIKE_ESCAPE, Queries, Stmt, Then, placeholders

# The same text as the partial index predicates (migration 0001, 0004), as elsewhere.
_PENDING_DELIVERIES = "(" + ", ".join(f"'{state.value}'" for state in PENDING_STATES) + ")"
_PENDING_POSTS = "('pending', 'sending')"
_ACTIVE_BULK = "('Accepted', 'Processing')"


@dataclass(slots=True)
class DataRemovalRecord:
    id: int
    requested_by: str
    requested_for: str  # the lower-cased address while Pending; its SHA-256 (hex) once Done
    notify: bool
    status: str  # "Pending" | "Done"
    removed: int
    created_at: int
    completed_at: int | None


_REMOVAL_COLUMNS = "id, requested_by, requested_for, notify, status, removed, created_at, completed_at"


def _removal(row: Sequence[Any]) -> DataRemovalRecord:
    return DataRemovalRecord(int(row[0]), row[1], row[2], bool(row[3]), row[4], int(row[5]), int(row[6]), row[7])


def address_digest(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


class RetentionQueries(Queries):
    # -- finding what there is ------------------------------------------------------------------------

    async def distinct_values(self, table: str, column: str, prefix: Sequence[tuple[str, Any]] = ()) -> list[Any]:
        """Every distinct value of `column` among the rows whose leading index columns equal `prefix`, one
        index probe per value (`min(column) … > last`): a loose index scan, where `SELECT DISTINCT` would read
        every row. `table`, `column` and the prefix's column names are fixed texts of this module's callers."""
        where = "".join(f"{name} = ? AND " for name, _ in prefix)
        args = [value for _, value in prefix]
        found: list[Any] = []
        row = await self.query_one(f"SELECT min({column}) FROM {table} WHERE {where}{column} IS NOT NULL", args)
        while row is not None and row[0] is not None:
            found.append(row[0])
            row = await self.query_one(f"SELECT min({column}) FROM {table} WHERE {where}{column} > ?",
                                       [*args, row[0]])
        return found

    async def retention_server_ids(self) -> list[int]:
        """Every server with rows retention looks at: the servers that exist, and any deleted server whose
        messages, bounces, webhook posts, bulk requests or inbound messages remain (they expire by the default
        retention)."""
        ids = {int(r[0]) for r in await self.query("SELECT id FROM servers")}
        for table in ("messages", "bounces", "webhook_posts", "bulk_requests", "inbound_messages"):
            ids.update(int(v) for v in await self.distinct_values(table, "server_id"))
        return sorted(ids)

    async def expired_message_ids(self, server_id: int, stream: str, cutoff: int, limit: int) -> list[str]:
        """Up to `limit` messages of a server's stream received before `cutoff` (µs), not scheduled after it,
        and with no recipient still to deliver."""
        rows = await self.query(
            "SELECT message_id FROM messages WHERE server_id = ? AND stream = ? AND received_at < ? "
            "AND (send_at IS NULL OR send_at < ?) AND NOT EXISTS (SELECT 1 FROM deliveries d "
            f"WHERE d.message_id = messages.message_id AND d.state IN {_PENDING_DELIVERIES}) LIMIT ?",
            (server_id, stream, cutoff, cutoff, limit))
        return [str(r[0]) for r in rows]

    async def expired_inbound_ids(self, server_id: int, cutoff: int, limit: int) -> list[int]:
        """Up to `limit` inbound messages of a server received before `cutoff` (µs) whose post to the
        InboundHookUrl is not still to be made (a Queued message waits for its post, as outbound mail for
        its delivery)."""
        rows = await self.query(
            "SELECT id FROM inbound_messages WHERE server_id = ? AND received_at < ? AND NOT EXISTS (SELECT 1 FROM "
            f"webhook_posts p WHERE p.inbound_id = inbound_messages.id AND p.state IN {_PENDING_POSTS}) LIMIT ?",
            (server_id, cutoff, limit))
        return [int(r[0]) for r in rows]

    # -- deleting -------------------------------------------------------------------------------------

    def _delete_messages_stmts(self, ids: Sequence[str]) -> list[Stmt]:
        """Statements that delete messages with everything hanging off them: queue rows, events, metadata,
        links, opens and clicks (and their per-delivery counters), bounces. A message with a recipient
        still pending (one leased by a worker right now) is kept, with its queue rows, for a later pass."""
        marks = placeholders(len(ids))
        ids = list(ids)
        deliveries = f"SELECT id FROM deliveries WHERE message_id IN ({marks})"
        return [
            Stmt(f"DELETE FROM engagements WHERE delivery_id IN ({deliveries})", ids),
            Stmt(f"DELETE FROM link_engagements WHERE delivery_id IN ({deliveries})", ids),
            Stmt(f"DELETE FROM tracking_hits WHERE message_id IN ({marks})", ids),
            Stmt(f"DELETE FROM events WHERE message_id IN ({marks})", ids),
            Stmt(f"DELETE FROM message_metadata WHERE message_id IN ({marks})", ids),
            Stmt(f"DELETE FROM message_links WHERE message_id IN ({marks})", ids),
            Stmt(f"DELETE FROM bounces WHERE message_id IN ({marks})", ids),
            Stmt(f"DELETE FROM deliveries WHERE message_id IN ({marks}) AND message_id NOT IN (SELECT message_id "
                 f"FROM deliveries WHERE message_id IN ({marks}) AND state IN {_PENDING_DELIVERIES})", ids + ids),
            Stmt(f"DELETE FROM messages WHERE message_id IN ({marks}) AND NOT EXISTS (SELECT 1 FROM deliveries d "
                 f"WHERE d.message_id = messages.message_id AND d.state IN {_PENDING_DELIVERIES}) RETURNING message_id",
                 ids, fetch=True),
        ]

    async def delete_messages(self, ids: Sequence[str], *, removal_id: int | None = None) -> int:
        """Delete these messages (one transaction); how many went. With `removal_id`, that data removal's
        progress counts them in the same transaction."""
        if not ids:
            return 0
        stmts = self._delete_messages_stmts(ids)
        results = await self.transact([*stmts, Then(lambda done: self._progress(removal_id, len(done[-1])))])
        return len(results[len(stmts) - 1])

    async def delete_inbound(self, ids: Sequence[int], *, removal_id: int | None = None) -> int:
        """Delete these inbound messages (one transaction) with their posts and the posts' attempt logs, and
        their stored bytes once no other recipient's row shares them; how many messages went. Retention
        (no `removal_id`) leaves a post still to be made, and its message, for a later pass; a data removal
        drops such a post too. Either leaves a post a worker is making right now, and its message."""
        if not ids:
            return 0
        marks = placeholders(len(ids))
        ids = list(ids)
        kept = "('sending')" if removal_id is not None else _PENDING_POSTS
        posts = f"SELECT id FROM webhook_posts WHERE inbound_id IN ({marks}) AND state NOT IN {kept}"

        def contents(done: list[list[Sequence[Any]]]) -> list[Stmt]:
            content_ids = sorted({int(r[1]) for r in done[-1]})
            if not content_ids:
                return []
            return [Stmt(f"DELETE FROM inbound_contents WHERE id IN ({placeholders(len(content_ids))}) AND NOT EXISTS "
                         "(SELECT 1 FROM inbound_messages m WHERE m.content_id = inbound_contents.id)", content_ids),
                    *self._progress(removal_id, len(done[-1]))]

        results = await self.transact([
            Stmt(f"DELETE FROM webhook_attempts WHERE post_id IN ({posts})", ids),
            Stmt(f"DELETE FROM webhook_posts WHERE id IN ({posts})", ids),
            Stmt(f"DELETE FROM inbound_messages WHERE id IN ({marks}) AND NOT EXISTS (SELECT 1 FROM webhook_posts p "
                 "WHERE p.inbound_id = inbound_messages.id) RETURNING id, content_id", ids, fetch=True),
            Then(contents),
        ])
        return len(results[2])

    async def delete_expired_bounces(self, server_id: int, cutoff: int, limit: int) -> int:
        """Bounces of a server recorded before `cutoff` (those of retained messages are younger than them)."""
        results = await self.transact([Stmt(
            "DELETE FROM bounces WHERE id IN (SELECT id FROM bounces WHERE server_id = ? AND bounced_at < ? "
            "LIMIT ?) RETURNING id", (server_id, cutoff, limit), fetch=True)])
        return len(results[0])

    async def delete_expired_webhook_posts(self, server_id: int, cutoff: int, limit: int) -> int:
        """A server's webhook posts created before `cutoff` and no longer due, with their attempt log."""
        found = "SELECT id FROM webhook_posts WHERE server_id = ? AND created_at < ? " \
            f"AND state NOT IN {_PENDING_POSTS} LIMIT ?"
        results = await self.transact([
            Stmt(f"DELETE FROM webhook_attempts WHERE post_id IN ({found})", (server_id, cutoff, limit)),
            Stmt(f"DELETE FROM webhook_posts WHERE id IN ({found}) RETURNING id", (server_id, cutoff, limit),
                 fetch=True),
        ])
        return len(results[1])

    async def delete_expired_bulk_requests(self, server_id: int, cutoff: int, limit: int) -> int:
        """A server's finished bulk requests submitted before `cutoff`, with their chunk guards."""
        rows = await self.query(
            f"SELECT id FROM bulk_requests WHERE server_id = ? AND submitted_at < ? AND status NOT IN {_ACTIVE_BULK} "
            "LIMIT ?", (server_id, cutoff, limit))
        return await self.delete_bulk_requests([str(r[0]) for r in rows])

    async def delete_bulk_requests(self, ids: Sequence[str], *, removal_id: int | None = None) -> int:
        """Delete these bulk requests, unless one is still being expanded, with their chunk guards."""
        if not ids:
            return 0
        marks = placeholders(len(ids))
        results = await self.transact([
            Stmt(f"DELETE FROM bulk_chunks WHERE bulk_id IN ({marks}) AND bulk_id NOT IN (SELECT id FROM "
                 f"bulk_requests WHERE id IN ({marks}) AND status IN {_ACTIVE_BULK})", [*ids, *ids]),
            Stmt(f"DELETE FROM bulk_requests WHERE id IN ({marks}) AND status NOT IN {_ACTIVE_BULK} RETURNING id",
                 list(ids), fetch=True),
            Then(lambda done: self._progress(removal_id, len(done[-1]))),
        ])
        return len(results[1])

    async def delete_expired_tokens(self, now: int, limit: int) -> int:
        """Rotated tokens past the end of their grace period."""
        results = await self.transact([Stmt(
            "DELETE FROM api_tokens WHERE token_hash IN (SELECT token_hash FROM api_tokens WHERE expires_at IS NOT "
            "NULL AND expires_at <= ? LIMIT ?) RETURNING token_hash", (now, limit), fetch=True)])
        return len(results[0])

    async def prune_subject_index(self, after: int, limit: int) -> tuple[int | None, int]:
        """Delete the subject-search rows of messages that are gone, looking at up to `limit` rows after
        position `after`: (the position to go on from, None at the end; rows deleted). Only SQLite keeps
        such an index apart from the messages (migration 0003); elsewhere there is nothing to do."""
        return None, 0

    # -- data removals (docs/postmark-api.md §8.4) ----------------------------------------------------

    async def create_data_removal(self, requested_by: str, requested_for: str, notify: bool, now: int) -> int:
        results = await self.transact([Stmt(
            "INSERT INTO data_removals (requested_by, requested_for, notify, status, removed, created_at, updated_at, "
            "lease_until) VALUES (?, ?, ?, 'Pending', 0, ?, ?, 0) RETURNING id",
            (requested_by, requested_for.strip().lower(), int(notify), now, now), fetch=True)])
        return int(results[0][0][0])

    async def get_data_removal(self, removal_id: int) -> DataRemovalRecord | None:
        row = await self.query_one(f"SELECT {_REMOVAL_COLUMNS} FROM data_removals WHERE id = ?", (removal_id,))
        return _removal(row) if row else None

    async def claim_data_removal(self, owner: str, now: int, lease_until: int,
                                 removal_id: int | None = None) -> DataRemovalRecord | None:
        """Lease the oldest pending removal (or the one named) that nobody holds, until `lease_until`."""
        which = "id = ?" if removal_id is not None else "lease_until <= ?"
        arg = removal_id if removal_id is not None else now
        rows = (await self.transact([Stmt(
            "UPDATE data_removals SET lease_owner = ?, lease_until = ?, updated_at = ? WHERE id IN (SELECT id FROM "
            f"data_removals WHERE status = 'Pending' AND {which} AND lease_until <= ? ORDER BY id LIMIT 1 "
            f"{self.claim_lock_clause}) RETURNING {_REMOVAL_COLUMNS}",
            (owner, lease_until, now, arg, now), fetch=True)]))[0]
        return _removal(rows[0]) if rows else None

    async def extend_data_removal(self, removal_id: int, owner: str, lease_until: int) -> bool:
        rows = (await self.transact([Stmt(
            "UPDATE data_removals SET lease_until = ? WHERE id = ? AND lease_owner = ? AND status = 'Pending' "
            "RETURNING id", (lease_until, removal_id, owner), fetch=True)]))[0]
        return bool(rows)

    async def release_data_removal(self, removal_id: int, owner: str) -> None:
        await self.transact([Stmt("UPDATE data_removals SET lease_owner = NULL, lease_until = 0 WHERE id = ? "
                                  "AND lease_owner = ?", (removal_id, owner))])

    async def finish_data_removal(self, removal_id: int, owner: str, now: int) -> bool:
        """Done: only the address's digest stays in the record."""
        record = await self.get_data_removal(removal_id)
        if record is None:
            return False
        rows = (await self.transact([Stmt(
            "UPDATE data_removals SET status = 'Done', requested_for = ?, completed_at = ?, updated_at = ?, "
            "lease_owner = NULL, lease_until = 0 WHERE id = ? AND lease_owner = ? AND status = 'Pending' RETURNING id",
            (address_digest(record.requested_for), now, now, removal_id, owner), fetch=True)]))[0]
        return bool(rows)

    def _progress(self, removal_id: int | None, count: int | None) -> list[Stmt]:
        if removal_id is None or not count:
            return []
        return [Stmt("UPDATE data_removals SET removed = removed + ? WHERE id = ?", (count, removal_id))]

    async def messages_of_address(self, address: str, server_ids: Sequence[int], limit: int) -> list[str]:
        """Up to `limit` messages sent to the address (To, Cc or Bcc: it has a queue row) or from it."""
        rows = await self.query(
            "SELECT DISTINCT message_id FROM deliveries WHERE lower(recipient) = ? LIMIT ?", (address, limit))
        found = [str(r[0]) for r in rows]
        for server_id in server_ids:
            if len(found) >= limit:
                break
            for stream in await self.distinct_values("messages", "stream", [("server_id", server_id)]):
                rows = await self.query(
                    "SELECT message_id FROM messages WHERE server_id = ? AND stream = ? AND lower(from_email) = ? "
                    "LIMIT ?", (server_id, stream, address, limit - len(found)))
                found.extend(str(r[0]) for r in rows)
                if len(found) >= limit:
                    break
        return list(dict.fromkeys(found))

    async def inbound_of_address(self, address: str, after: int, limit: int) -> tuple[int | None, list[int]]:
        """Inbound messages from the address (From, or the envelope sender) or to it (the envelope recipient,
        To or Cc), among up to `limit` rows after id `after`, every server: (the id to go on from, None at
        the end; the matching ids). A walk in id order: no index holds every address a message names."""
        rows = await self.query(
            "SELECT id, from_email, envelope_sender, original_recipient, recipients FROM inbound_messages "
            "WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
        needle = "|" + address + "|"
        found = [int(r[0]) for r in rows
                 if address in (str(r[1]).lower(), str(r[2]).lower(), str(r[3]).lower()) or needle in str(r[4])]
        return (int(rows[-1][0]) if len(rows) == limit else None), found

    async def delete_inbound_rules_naming(self, address: str, removal_id: int) -> int:
        """Inbound rules (every server's) that are this address, not its domain; how many went."""
        results = await self.transact([
            Stmt("DELETE FROM inbound_rules WHERE lower(rule) = ? RETURNING id", (address,), fetch=True),
            Then(lambda done: self._progress(removal_id, len(done[-1]))),
        ])
        return len(results[0])

    async def cancel_pending(self, ids: Sequence[str]) -> int:
        """Cancel these messages' recipients not yet handed to a worker (a leased one finishes first)."""
        if not ids:
            return 0
        results = await self.transact([Stmt(
            f"UPDATE deliveries SET state = 'cancelled', lease_owner = NULL WHERE message_id IN "
            f"({placeholders(len(ids))}) AND state IN ('queued', 'deferred') RETURNING id", list(ids), fetch=True)])
        return len(results[0])

    async def delete_address_rows(self, address: str, server_ids: Sequence[int], removal_id: int, limit: int) -> int:
        """The address's rows that belong to no message of theirs: bounces recorded for it, its suppressions,
        its opens and clicks; at most `limit` of each per server. How many went."""
        removed = 0
        for server_id in server_ids:
            stmts = [
                Stmt("DELETE FROM bounces WHERE id IN (SELECT id FROM bounces WHERE server_id = ? AND lower(email) = ? "
                     "LIMIT ?) RETURNING id", (server_id, address, limit), fetch=True),
                Stmt("DELETE FROM tracking_hits WHERE id IN (SELECT id FROM tracking_hits WHERE server_id = ? AND "
                     "lower(recipient) = ? LIMIT ?) RETURNING id", (server_id, address, limit), fetch=True),
            ]
            stmts.extend(  # by (server, stream, email), the primary key
                Stmt("DELETE FROM suppressions WHERE server_id = ? AND stream = ? AND email = ? RETURNING email",
                     (server_id, stream, address), fetch=True)
                for stream in await self.distinct_values("suppressions", "stream", [("server_id", server_id)]))
            results = await self.transact(
                [*stmts, Then(lambda done: self._progress(removal_id, sum(len(rows) for rows in done)))])
            removed += sum(len(rows) for rows in results)
        return removed

    async def webhook_posts_after(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        """(id, state, payload) of up to `limit` webhook posts after id `after`, in id order."""
        rows = await self.query("SELECT id, state, payload FROM webhook_posts WHERE id > ? ORDER BY id LIMIT ?",
                                (after, limit))
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def delete_webhook_posts(self, ids: Sequence[int], removal_id: int | None = None) -> int:
        """Delete these posts (unless a worker is posting one right now) with their attempt logs."""
        if not ids:
            return 0
        marks = placeholders(len(ids))
        results = await self.transact([
            Stmt(f"DELETE FROM webhook_attempts WHERE post_id IN (SELECT id FROM webhook_posts WHERE id IN ({marks}) "
                 "AND state <> 'sending')", list(ids)),
            Stmt(f"DELETE FROM webhook_posts WHERE id IN ({marks}) AND state <> 'sending' RETURNING id", list(ids),
                 fetch=True),
            Then(lambda done: self._progress(removal_id, len(done[-1]))),
        ])
        return len(results[1])

    async def bulk_requests_naming(self, server_id: int, pattern: str) -> list[str]:
        """Finished bulk requests of a server whose stored request contains `pattern` (a LIKE pattern)."""
        rows = await self.query(
            f"SELECT id FROM bulk_requests WHERE server_id = ? AND status NOT IN {_ACTIVE_BULK} "
            f"AND lower(request) LIKE ? {LIKE_ESCAPE}", (server_id, pattern))
        return [str(r[0]) for r in rows]
