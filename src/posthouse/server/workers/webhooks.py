"""The webhook dispatcher: claim due posts from the outbox, post each signed, record the outcome
(docs/architecture.md §5).

A post is retried on Postmark's schedule (a setting) until it succeeds (2xx), the receiver says stop
(403, 410), its URL is no longer allowed, or the schedule runs out; each attempt is logged with its
status code and an excerpt of the answer. A crash between the event and the post loses nothing: the
post was committed with the event, and an expired lease makes it due again (at least once).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from posthouse.server.errors import StoreError
from posthouse.server.logs import RepeatedFailures, log_event, redact_url
from posthouse.server.metrics import Metrics
from posthouse.server.services.clock import Clock
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.store.base import Store
from posthouse.server.store.webhooks import ClaimedPost, PostAttempt, PostUpdate
from posthouse.server.webhooks.poster import PostOutcome, PostTarget, WebhookPoster
from posthouse.server.webhooks.schedule import next_attempt_delay
from posthouse.server.workers.claiming import claim_loop

log = logging.getLogger("posthouse.webhooks")
_FINAL_STATES = {PostOutcome.DELIVERED: "delivered", PostOutcome.STOP: "stopped", PostOutcome.REFUSED: "refused"}


def body_of(post: ClaimedPost) -> bytes:
    """The payload as sent: a bounce's `ID` is known only once its row exists, so it is written in here."""
    if post.bounce_id is None:
        return post.payload.encode()
    payload = json.loads(post.payload)
    payload["ID"] = post.bounce_id
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookDispatcher:
    def __init__(self, store: Store, poster: WebhookPoster, clock: Clock, wakeup: Wakeup, *, owner: str,
                 schedule: Sequence[float], concurrency: int = 16, batch_size: int = 64, lease_seconds: float = 120.0,
                 poll_seconds: float = 1.0,
                 inbound_payload: Callable[[int], Awaitable[bytes | None]] | None = None,
                 inbound_schedule: Sequence[float] | None = None, metrics: Metrics | None = None,
                 repeat_interval: float = 60.0) -> None:
        self.store = store
        # An Inbound post's body is built when it is sent, from the stored message (services/inbound.py), and
        # it is retried on the inbound schedule.
        self.inbound_payload = inbound_payload
        self.inbound_schedule = tuple(inbound_schedule) if inbound_schedule is not None else tuple(schedule)
        self.metrics = metrics
        # A receiver that keeps failing: one warning per interval, not one per post (logs.RepeatedFailures).
        self.failures = RepeatedFailures(log, interval=repeat_interval)
        self.poster = poster
        self.clock = clock
        self.wakeup = wakeup
        self.owner = owner
        self.schedule = tuple(schedule)
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.lease_micros = int(lease_seconds * 1_000_000)
        self.poll_seconds = poll_seconds
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.notify()

    async def run(self) -> None:
        """Claim as many due posts as there are free slots, post them concurrently, record each; sleep
        until woken or the poll interval passes. Stops when `stop()` is called, after the posts in
        flight have been recorded."""
        async def claim(limit: int) -> list[ClaimedPost]:
            now = self.clock.micros()
            return await self.store.claim_webhook_posts(self.owner, now, limit, now + self.lease_micros)

        await claim_loop(stopping=self._stopping, wakeup=self.wakeup, poll_seconds=self.poll_seconds,
                         concurrency=self.concurrency, batch_size=self.batch_size, claim=claim,
                         work=lambda posts: (self._post(post) for post in posts), what="webhook posts",
                         refill=max(1, min(self.batch_size, self.concurrency // 4)))

    async def _body(self, post: ClaimedPost) -> bytes | None:
        if post.inbound_id is None:
            return body_of(post)
        if self.inbound_payload is None:
            return None
        return await self.inbound_payload(post.inbound_id)

    async def _post(self, post: ClaimedPost) -> None:
        webhook = post.webhook
        body = await self._body(post) if webhook is not None else None
        if webhook is None or body is None:  # deleted since the event (or its message): nobody to tell
            why = "the webhook was deleted" if webhook is None else "the inbound message is gone"
            update = PostUpdate(post, self.owner, "cancelled", self.clock.micros(),
                                PostAttempt(self.clock.micros(), "cancelled", None, "", 0.0, why))
        else:
            auth = (webhook.http_auth_username or "", webhook.http_auth_password or "") \
                if webhook.http_auth_username is not None else None
            target = PostTarget(webhook.url, webhook.secret, auth, webhook.http_headers)
            result = await self.poster.post(target, post.event_id, body,
                                            now_s=self.clock.micros() // 1_000_000)
            now = self.clock.micros()
            state = _FINAL_STATES.get(result.outcome)
            if post.inbound_id is not None and state == "delivered" and result.status_code != 200:
                state = None  # an inbound post needs exactly 200 (docs/postmark-api.md §7.2); others are retried
            next_at = now
            if state is None:
                schedule = self.schedule if post.inbound_id is None else self.inbound_schedule
                delay = next_attempt_delay(post.attempts, schedule)
                if delay is None:
                    state = "failed"
                else:
                    state, next_at = "pending", now + int(delay * 1_000_000)
            update = PostUpdate(post, self.owner, state, next_at, PostAttempt(
                now, result.outcome.value, result.status_code, result.response_excerpt, result.duration_ms,
                result.error))
            # The URL without user name, password or query (they may carry the receiver's secrets).
            url = redact_url(webhook.url)
            if self.metrics is not None:
                self.metrics.observe_webhook_post(result.outcome.value, result.duration_ms / 1000)
            log_event(log, logging.INFO, "webhook post", webhook_id=webhook.id, server_id=webhook.server_id,
                      record_type=post.record_type, url=url, attempt=post.attempts, outcome=result.outcome.value,
                      status=result.status_code, ms=round(result.duration_ms, 1), next=state, error=result.error)
            if result.outcome is PostOutcome.DELIVERED:
                self.failures.succeeded("webhook", url)
            else:
                self.failures.failed("webhook", url, result.error or result.outcome.value, webhook_id=webhook.id,
                                     status=result.status_code)
            if state in ("failed", "stopped", "refused"):
                log.warning("webhook %d post %s %s after %d attempt(s): %s", webhook.id, post.event_id, state,
                            post.attempts, result.error)
        for attempt in range(3):
            try:
                await self.store.record_webhook_posts([update])
                return
            except StoreError as exc:
                log.error("recording webhook post %s failed (try %d): %s", post.event_id, attempt + 1, exc)
                await asyncio.sleep(0.5 * (attempt + 1))
        # Not recorded: the lease expires and the post is sent again (at least once, never lost).
