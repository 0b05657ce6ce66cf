"""Idempotency keys: one row per (server, key), holding the request's hash and, once done, its answer.

A send's answer is written by `finish_stmt` inside the transaction that stores the send's messages, so
a key is never done without its mail and mail is never stored without its key done: a retry after a
crash either replays the answer or (the row still in flight, nothing stored) runs the request again.
"""

from __future__ import annotations

from dataclasses import dataclass

from posthouse.server.store.sql import Queries, Stmt


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """The key a request holds while it runs."""

    server_id: int
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    request_hash: str
    state: str  # in_flight | done
    status_code: int | None
    response: str | None


def finish_stmt(held: IdempotencyKey, status_code: int, response: bytes) -> Stmt:
    return Stmt("UPDATE idempotency_keys SET state = 'done', status_code = ?, response = ? "
                "WHERE server_id = ? AND key = ? AND request_hash = ?",
                (status_code, response.decode(), held.server_id, held.key, held.request_hash))


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
            Stmt("INSERT INTO idempotency_keys (server_id, key, request_hash, state, created_at, expires_at) "
                 "VALUES (?, ?, ?, 'in_flight', ?, ?) ON CONFLICT (server_id, key) DO NOTHING RETURNING key",
                 (held.server_id, held.key, held.request_hash, now, expires_at), fetch=True),
            Stmt("SELECT request_hash, state, status_code, response FROM idempotency_keys "
                 "WHERE server_id = ? AND key = ?", (held.server_id, held.key), fetch=True),
        ])
        if results[1]:
            return None
        row = results[2][0]
        return IdempotencyRecord(row[0], row[1], row[2], row[3])

    async def finish_idempotency_key(self, held: IdempotencyKey, status_code: int, response: bytes) -> None:
        """Record an answer given without storing mail (a refused request)."""
        await self.transact([finish_stmt(held, status_code, response)])

    async def release_idempotency_key(self, held: IdempotencyKey) -> None:
        """Let the key go (the request failed inside Posthouse): a retry runs it again."""
        await self.transact([Stmt("DELETE FROM idempotency_keys WHERE server_id = ? AND key = ? AND "
                                  "request_hash = ? AND state = 'in_flight'",
                                  (held.server_id, held.key, held.request_hash))])

    async def purge_idempotency_keys(self, now: int) -> None:
        await self.transact([Stmt("DELETE FROM idempotency_keys WHERE expires_at < ?", (now,))])
