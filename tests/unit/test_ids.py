"""Message ids are UUIDv7: Postmark's UUID format, ordered by time, unique."""

from __future__ import annotations

import time
import uuid

from posthouse.server.domain.ids import new_message_id


def test_ids_are_version_7_uuids_carrying_the_time() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(new_message_id())
    after = time.time_ns() // 1_000_000
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_ids_made_in_a_burst_are_unique_and_in_order() -> None:
    ids = [new_message_id() for _ in range(20_000)]  # several thousand per millisecond: the counter rolls over
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 36 and i == i.lower() for i in ids)
