"""The installation's VERP return paths (`domain.verp`), with the key every node shares from the store."""

from __future__ import annotations

import secrets

from posthouse.server.domain.verp import ReturnPath
from posthouse.server.store.base import Store


class ReturnPaths:
    """`ReturnPath` for this installation; the key is read (or made, by the first node) once."""

    def __init__(self, store: Store, local: str, domain: str) -> None:
        self.store = store
        self.local = local
        self.domain = domain
        self._return_path: ReturnPath | None = None

    async def get(self) -> ReturnPath:
        if self._return_path is None:
            key = await self.store.secret("verp-key", secrets.token_hex(32))
            self._return_path = ReturnPath(self.local, self.domain, bytes.fromhex(key))
        return self._return_path

    def is_return_address(self, address: str) -> bool:
        return address.rpartition("@")[2].lower().rstrip(".") == self.domain
