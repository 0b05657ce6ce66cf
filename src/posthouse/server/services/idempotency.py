"""Idempotency keys on the send endpoints (a Posthouse extension, like Stripe's `Idempotency-Key`).

The same key with the same request within the key's lifetime (24 hours) replays the first answer
and sends nothing; with a different request it is refused (422, ErrorCode 1610); while the first
request still runs, a second one is refused with 409 (ErrorCode 1611). Keys belong to a server and
live in the database, so this holds across restarts and API nodes. The answer of a request that
stored mail is recorded in the same transaction as the mail (`store.idempotency`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from posthouse.server.errors import ApiError
from posthouse.server.services.clock import Clock
from posthouse.server.store.base import Store
from posthouse.server.store.idempotency import IdempotencyKey

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Replay:
    """The recorded answer of an earlier request with this key."""

    status_code: int
    body: bytes


class IdempotencyService:
    def __init__(self, store: Store, clock: Clock, *, lifetime: float = 86400.0, in_flight_timeout: float = 120.0
                 ) -> None:
        self.store = store
        self.clock = clock
        self.lifetime_micros = int(lifetime * 1_000_000)
        # A request still "in flight" after this long died with its process (it stored nothing, since
        # mail and the key's answer commit together): the key may be taken again.
        self.in_flight_micros = int(in_flight_timeout * 1_000_000)

    async def begin(self, server_id: int, key: str, method: str, path: str, body: bytes
                    ) -> IdempotencyKey | Replay:
        """Hold `key` for this request, or give the answer recorded for it."""
        if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise ApiError(1612, f"Invalid Idempotency-Key: use 1 to {MAX_KEY_LENGTH} printable ASCII characters.")
        digest = hashlib.sha256(f"{method.upper()} {path.lower().rstrip('/')}\n".encode() + body).hexdigest()
        now = self.clock.micros()
        held = IdempotencyKey(server_id, key, digest, created_at=now, expires_at=now + self.lifetime_micros)
        existing = await self.store.claim_idempotency_key(held, now, now + self.lifetime_micros,
                                                          now - self.in_flight_micros)
        if existing is None:
            return held
        if existing.request_hash != digest:
            raise ApiError(1610, "This Idempotency-Key was already used with a different request. Use a new key "
                                 "for a new request.")
        if existing.state != "done" or existing.status_code is None:
            raise ApiError(1611, "A request with this Idempotency-Key is still in progress. Retry later.", 409)
        return Replay(existing.status_code, (existing.response or "").encode())

    async def finish(self, held: IdempotencyKey, status_code: int, body: bytes) -> None:
        """Record an answer given without storing mail (a refusal)."""
        await self.store.finish_idempotency_key(held, status_code, body)

    async def release(self, held: IdempotencyKey) -> None:
        await self.store.release_idempotency_key(held)
