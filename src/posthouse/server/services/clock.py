"""Time, injectable: services ask a Clock, tests pass a fake one."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def micros(self) -> int:
        return time.time_ns() // 1000


def to_micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def iso(value: int | None) -> str | None:
    """Microseconds → ISO 8601 with an explicit offset (docs/postmark-api.md §1.4 item 8)."""
    if value is None:
        return None
    return from_micros(value).isoformat(timespec="microseconds")
