"""The retry schedule: when a deferred delivery is due again, and when to give up."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays between attempts (the last one repeats), ±jitter, and the age at which to give up."""

    delays: Sequence[float]
    max_age: float
    jitter: float = 0.1

    def delay_after(self, attempts: int, hint: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (1-based)."""
        base = self.delays[min(max(attempts, 1), len(self.delays)) - 1]
        if hint is not None:
            base = max(base, min(hint, self.delays[-1]))
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def is_expired(self, age: float) -> bool:
        return age >= self.max_age
