"""The webhook retry schedule: how long to wait after a failed post, and when to give up."""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["POSTMARK_WEBHOOK_SCHEDULE", "next_attempt_delay"]

# Postmark retries a failed webhook 10 times over about 10.5 hours, after 1 min, 5 min, 10 min,
# 10 min, 10 min, 15 min, 30 min, 1 h, 2 h and 6 h (docs/postmark-api.md §7.2): seconds between attempts.
POSTMARK_WEBHOOK_SCHEDULE: tuple[float, ...] = (60, 300, 600, 600, 600, 900, 1800, 3600, 7200, 21600)


def next_attempt_delay(
    attempt: int, schedule: Sequence[float], jitter: float = 0.1, *, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait after the `attempt`-th failed attempt (1-based), or None to give up.

    The first post is attempt 1, so `schedule[0]` separates it from the first retry and a schedule
    of n delays allows n retries. The delay is spread by ±`jitter` (a fraction of it) so that posts
    that failed together, e.g. while a receiver was down, do not all come back in the same second.
    """
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter is a fraction in [0, 1), got {jitter}")
    if attempt > len(schedule):
        return None
    base = float(schedule[attempt - 1])
    spread = base * jitter
    return max(0.0, base + (rng or random).uniform(-spread, spread))
