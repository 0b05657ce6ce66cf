"""Wake-ups: new work wakes the delivery workers at once instead of waiting for their poll."""

from __future__ import annotations

import asyncio


class Wakeup:
    """An in-process signal: `notify()` after a commit, `wait(timeout)` in a worker loop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if notified (and resets), False on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True
