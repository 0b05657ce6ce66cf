"""Idempotency keys: one row per (server, key), holding the request's hash and, once done, its answer.

A send's answer is written by `finish_stmt` inside the transaction that stores the send's messages, so
a key is never done without its mail and mail is never stored without its key done: a retry after a
crash either replays the answer or (the row still in flight, nothing stored) runs the request again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from posthouse.server.store.sql import Queries, Stmt


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """The key a request holds while it runs; `holder` is this request's own mark on the row."""

    server_id: int
    key: str
    request_hash: str
    holder: str = field(default_factory=lambda: secrets.token_hex(8))
    created_at: int = 0
    expires_at: int = 0


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    request_hash: str
    state: str  # in_flight | done
    status_code: int | None
    response: str | None


def finish_stmt(held: IdempotencyKey, status_code: int, response: bytes) -> list[Stmt]:
    """The answer, written only while this request still holds the key: the hold is deleted by its
    holder and the answer inserted. If another request took the key over meanwhile, the delete finds
    nothing, the insert meets that request's row and fails, and so does the transaction with the mail
    in it: the mail is stored once, by whoever holds the key."""
    return [
        Stmt("DELETE FROM idempotency_keys WHERE server_id = ? AND key = ? AND holder = ? AND state = 'in_flight'",
             (held.server_id, held.key, held.holder)),
        Stmt("INSERT INTO idempotency_keys (server_id, key, request_hash, state, status_code, response, created_at, "
             "expires_at, holder) VALUES (?, ?, ?, 'done', ?, ?, ?, ?, ?)",
             (held.server_id, held.key, held.request_hash, status_code, response.decode(), held.created_at,
              held.expires_at, held.holder)),
    ]


class IdempotencyQueries(Queries):
    async def claim_idempotency_key(self, held: IdempotencyKey, now: int, expires_at: int, stale_before: int
                                    ) -> IdempotencyRecord | None:
        """Hold the key for this request (None), or return the row that already holds it.

        An expired row, or one left in flight since before `stale_before` (its request died: nothing
        was stored, see the module doc), is replaced.
        """
        results = await self.transact([
            Stmt("DELETE FROM idempotency_keys WHERE server_id = ? AND key = ? AND (expires_at < ? OR "
                 "(state = 'in_flight' AND created_at < ?))", (held.server_id, held.key, now, stale_before)),
            Stmt("INSERT INTO idempotency_keys (server_id, key, request_hash, state, created_at, expires_at, holder) "
                 "VALUES (?, ?, ?, 'in_flight', ?, ?, ?) ON CONFLICT (server_id, key) DO NOTHING RETURNING key",
                 (held.server_id, held.key, held.request_hash, now, expires_at, held.holder), fetch=True),
            Stmt("SELECT request_hash, state, status_code, response FROM idempotency_keys "
                 "WHERE server_id = ? AND key = ?", (held.server_id, held.key), fetch=True),
        ])
        if results[1]:
            return None
        row = results[2][0]
        return IdempotencyRecord(row[0], row[1], row[2], row[3])

    async def finish_idempotency_key(self, held: IdempotencyKey, status_code: int, response: bytes) -> None:
        """Record an answer given without storing mail (a refused request)."""
        await self.transact(finish_stmt(held, status_code, response))

    async def purge_idempotency_keys(self, now: int, limit: int) -> int:
        """Delete up to `limit` keys expired before `now` (a replay is never answered from them); how many."""
        rows = (await self.transact([Stmt(
            "DELETE FROM idempotency_keys WHERE (server_id, key) IN (SELECT server_id, key FROM idempotency_keys "
            "WHERE expires_at < ? LIMIT ?) RETURNING key", (now, limit), fetch=True)]))[0]
        return len(rows)

    async def release_idempotency_key(self, held: IdempotencyKey) -> None:
        """Let the key go (the request failed inside Posthouse): a retry runs it again."""
        await self.transact([Stmt("DELETE FROM idempotency_keys WHERE server_id = ? AND key = ? AND "
                                  "holder = ? AND state = 'in_flight'", (held.server_id, held.key, held.holder))])
