"""When a failed call is tried again, and after how long: the retry policy, free of I/O.

A call is *replayable* when repeating it cannot do the work twice: reads, PUT/PATCH of whole settings,
and sends, which carry one `Idempotency-Key` for all their attempts. Other calls (creating a server or a
stream, archiving, deleting) are retried only when the server certainly did not act on them: the
connection was never made, or the answer was 429.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from posthouse.client.errors import InvalidRequestError, NetworkError, PosthouseError, RateLimitedError, ServerError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry, and how long to wait between tries.

    - `retries`: tries after the first one; 0 turns retrying off.
    - `backoff`: the wait before the first retry, in seconds; it doubles with each retry.
    - `max_backoff`: no wait is longer; a 429 whose Retry-After is longer is raised instead of waited out.

    Each wait is jittered between half and all of its value, so that clients that failed together do not
    come back together.
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 10.0

    def wait_before_retry(self, retry: int, error: PosthouseError, *, replayable: bool) -> float | None:
        """Seconds to wait before retry number `retry` (0 for the first), or None to raise `error`."""
        if retry >= self.retries:
            return None
        if isinstance(error, RateLimitedError):
            if error.retry_after is not None:
                return error.retry_after if error.retry_after <= self.max_backoff else None
            return self._jittered(retry)
        never_reached = isinstance(error, NetworkError) and not error.request_sent
        if never_reached or (replayable and isinstance(error, NetworkError | ServerError)):
            return self._jittered(retry)
        # 409 / 1611: the first attempt of this send (same Idempotency-Key) is still running on the
        # server. Waiting and asking again gets its answer; giving up would invite a second send.
        if replayable and isinstance(error, InvalidRequestError) and error.error_code == 1611:
            return self._jittered(retry)
        return None

    def _jittered(self, retry: int) -> float:
        ceiling = min(self.max_backoff, self.backoff * 2.0**retry)
        return ceiling / 2 + random.uniform(0, ceiling / 2)
