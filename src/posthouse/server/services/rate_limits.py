"""Rate limits: token buckets per key (a server's sending rate, a token's request rate), held in this process.

A bucket holds up to `burst` tokens and refills at `rate` per second. A request for `n` is admitted when the
bucket holds at least `min(n, burst)`, and then takes all `n`: a batch larger than the burst is admitted
from a full bucket, and what comes after it waits until the bucket has paid it back. A refusal says how long
until the request would be admitted (HTTP `Retry-After`, docs/postmark-api.md §1.2's 429).

The buckets live in the process that serves the request: several API/SMTP processes (nodes, or split roles)
each allow the full rate, so the effective limit is the setting times their number (README, "Limits").
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from posthouse.server.errors import RateLimitedError

MAX_KEYS = 10_000  # buckets kept at most; the least recently used goes first (a full one, as good as new)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key: `rate` per second, up to `burst` at once (0: one second's worth)."""

    def __init__(self, rate: float, burst: float = 0, *, max_keys: int = MAX_KEYS,
                 now: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("a rate limit needs a rate above 0")
        self.rate = float(rate)
        self.burst = float(burst) if burst > 0 else max(1.0, self.rate)
        self.max_keys = max_keys
        self._now = now
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, n: int = 1) -> float:
        """Take `n` for `key`: 0.0 when admitted, else the seconds until it would be (nothing is taken then)."""
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        needed = min(float(n), self.burst)
        if bucket.tokens >= needed:
            bucket.tokens -= n
            return 0.0
        return (needed - bucket.tokens) / self.rate

    def check(self, key: Hashable, n: int, what: str) -> None:
        """`take`, raising RateLimitedError (429, `Retry-After` in whole seconds) when refused."""
        wait = self.take(key, n)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise RateLimitedError(f"Rate limit exceeded: {what}. Retry after {seconds} s.", seconds)
