"""One load at a time per key, for the caches on the send path (services/hints.py, dkim_keys.py, returnpaths.py).

When a cached answer expires under load, every message in flight finds it missing at once: twenty SMTP
sessions each read the same webhook list or the same domain's keys, twenty queries where one answers them
all (the profile of the SMTP path counted about 400 such reads in 16 s). Callers that miss while a load for
the same key is running wait for that load instead. A key should include whatever makes an answer current
(the store's change count): a caller that comes after a change starts its own load rather than take one that
began before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SingleFlight(Generic[V]):
    __slots__ = ("_running",)

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[V]] = {}

    async def run(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(load())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        # A caller cancelled while waiting leaves the load running for the others.
        return await asyncio.shield(running)

    def _finished(self, key: Hashable, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have gone, and the next miss loads again
