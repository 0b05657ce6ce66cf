"""The installation's key for signing tracking tokens (domain/tracking.py), shared by every node through the store."""

from __future__ import annotations

import asyncio
import secrets

from posthouse.server.store.base import Store

KEY_NAME = "tracking-key"  # its row in `secrets`


class TrackingKey:
    """Read (or made, by the first node to ask) once, then kept; concurrent first callers share one read."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._key: bytes | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> bytes:
        if self._key is None:
            async with self._lock:
                if self._key is None:
                    self._key = bytes.fromhex(await self.store.secret(KEY_NAME, secrets.token_hex(32)))
        return self._key
