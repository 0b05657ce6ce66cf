"""Messages this process has just accepted, kept for its own delivery worker (docs/architecture.md §3).

With every role in one process (the default), a message is accepted, committed and, milliseconds later,
claimed by the worker of the same process, which used to read its row back from the database: one more
query per claim, every message's content copied out of SQLite again and handed across threads. The
acceptance keeps what delivery needs of each message here instead, and the claim takes it from here,
reading only the messages that are not (another node accepted them, they waited longer than the cache
holds, or a retry).

What is kept is exactly what the claim's query would return: columns of the message row that never change
after the insert. A scheduled message is not kept (it may wait days, and `reschedule` moves its time).
Memory is bounded by content bytes: the oldest entries leave first. An entry leaves when it is claimed, so
a retry (or the second claim of a message whose recipients fell due apart) reads the database as before.
Used on the event loop only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# The row as `Store._claimed` selects it: message_id, server_id, stream, envelope_from, received_at, content,
# tag, subject, sender, sandboxed, metadata, send_at, track_opens, track_links, from_email.
MessageRow = Sequence[Any]

DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class FreshMessages:
    __slots__ = ("_bytes", "_rows", "hits", "max_bytes", "misses")

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._rows: dict[str, MessageRow] = {}  # insertion order: the oldest first
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def put(self, rows: Iterable[MessageRow]) -> None:
        for row in rows:
            size = len(row[5])
            if size > self.max_bytes:
                continue
            self._drop(row[0])
            self._rows[row[0]] = row
            self._bytes += size
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._rows)))

    def discard(self, message_ids: Iterable[str]) -> None:
        for message_id in message_ids:
            self._drop(message_id)

    def take(self, message_ids: Sequence[str]) -> dict[str, MessageRow]:
        """The kept rows of these messages, removed from the cache; the others are the caller's to read."""
        found: dict[str, MessageRow] = {}
        for message_id in message_ids:
            row = self._rows.pop(message_id, None)
            if row is not None:
                self._bytes -= len(row[5])
                found[message_id] = row
        self.hits += len(found)
        self.misses += len(message_ids) - len(found)
        return found

    def _drop(self, message_id: str) -> None:
        row = self._rows.pop(message_id, None)
        if row is not None:
            self._bytes -= len(row[5])
