"""What the delivery worker tells about each attempt: one log line, the message counters and latency, and a
rate-limited warning for a destination (a relay, an MX host) that keeps failing."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from posthouse.server.delivery.smtp_client import Reply
from posthouse.server.domain.replies import Classification, Outcome
from posthouse.server.domain.statuses import DeliveryState
from posthouse.server.logs import RepeatedFailures, log_event
from posthouse.server.metrics import Metrics
from posthouse.server.store.base import ClaimedDelivery, DeliveryUpdate

log = logging.getLogger("posthouse.delivery")
_REPLY_CHARS = 300  # of the reply text in the line: enough for any diagnostic, bounded against a chatty peer


class AttemptLog:
    def __init__(self, metrics: Metrics | None = None, *, repeat_interval: float = 60.0) -> None:
        self.metrics = metrics
        self.failures = RepeatedFailures(log, interval=repeat_interval)

    def attempt(self, rows: Sequence[ClaimedDelivery], updates: Sequence[DeliveryUpdate], *, transport: str,
                destination: str, replies: Mapping[str, Reply], classified: Mapping[str, Classification],
                error: str | None, seconds: float | None, now: int) -> None:
        """One attempt to send a message to `rows`' recipients ended in `updates` (one per row, in order)."""
        first = rows[0]
        metrics = self.metrics
        if metrics is not None:
            if seconds is not None:
                metrics.observe_attempt(transport, seconds)
            for row, update in zip(rows, updates, strict=True):
                if update.state is DeliveryState.DELIVERED:
                    released = max(row.received_at, row.send_at or 0)
                    metrics.observe_delivered(row.stream, max(0.0, (now - released) / 1_000_000))
                else:
                    metrics.count_messages(update.state.value, row.stream)
        states = sorted({u.state.value for u in updates})
        reply = replies[first.recipient]
        if log.isEnabledFor(logging.INFO):
            log_event(log, logging.INFO, "delivery attempt", message_id=first.message_id,
                      domain=",".join(sorted({r.recipient.rpartition("@")[2].lower() for r in rows})),
                      recipients=len(rows), attempt=max(r.attempts for r in rows), transport=transport,
                      destination=destination, outcome=states[0] if len(states) == 1 else ",".join(states),
                      reply=str(reply)[:_REPLY_CHARS], ms=None if seconds is None else round(seconds * 1000, 1))
        # The destination failed when no conversation took place, or when it put off every recipient: one
        # recipient's full mailbox is that recipient's trouble, a relay answering 421 to all is the relay's.
        if error is not None:
            self.failures.failed(transport, destination, error, message_id=first.message_id)
        elif all(c.outcome is Outcome.TRANSIENT for c in classified.values()):
            self.failures.failed(transport, destination, str(reply)[:_REPLY_CHARS], message_id=first.message_id)
        else:
            self.failures.succeeded(transport, destination)
