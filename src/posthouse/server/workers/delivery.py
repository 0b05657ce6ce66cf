"""The delivery worker: claim due queue rows, send each message once for all its claimed recipients,
classify every reply and record the outcome (docs/architecture.md §3, §4).

A tracked message (issue 13) goes out once per recipient instead: its stored content carries placeholders
that become that recipient's own tokens just before sending (`tracking.personalize`), so each copy's opens
and clicks name its delivery. Untracked content is sent as stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator, Sequence
from itertools import groupby
from typing import Any

from posthouse.server.delivery.base import AttemptResult, Envelope, Transport
from posthouse.server.delivery.smtp_client import Reply
from posthouse.server.domain.replies import Classification, Outcome, classify_reply
from posthouse.server.domain.retry import RetryPolicy
from posthouse.server.domain.statuses import BounceType, DeliveryState, EventType
from posthouse.server.domain.tracking import personalize
from posthouse.server.errors import DeliveryError, StoreError
from posthouse.server.services import notifications
from posthouse.server.services.clock import Clock
from posthouse.server.services.dkim_signing import MessageSigner
from posthouse.server.services.hints import WebhookHints
from posthouse.server.services.returnpaths import ReturnPaths
from posthouse.server.services.tracking_key import TrackingKey
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.store.base import BounceRecord, ClaimedDelivery, DeliveryUpdate, Store
from posthouse.server.workers.claiming import claim_loop

log = logging.getLogger("posthouse.worker")
_PLACEHOLDER_MARK = b"phtrk"  # what every tracking placeholder starts with (domain/tracking.py)
_DESCRIPTIONS = {
    BounceType.HARD_BOUNCE: "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    BounceType.SOFT_BOUNCE: "Unable to temporarily deliver this email (ex: mailbox full, over quota, gave up).",
    BounceType.BAD_EMAIL_ADDRESS: "Invalid email address.",
    BounceType.DNS_ERROR: "A temporary DNS error happened while sending, or the domain does not accept mail.",
    BounceType.BLOCKED: "The receiving server blocked this message (ISP block or policy).",
    BounceType.DMARC_POLICY: "The message was rejected because of the sender domain's DMARC policy.",
    BounceType.ADDRESS_CHANGE: "The recipient has requested an address change.",
    BounceType.VIRUS_NOTIFICATION: "The receiving server reported a virus in this message.",
}


class DeliveryWorker:
    """One worker loop per process; `concurrency` messages in flight at most."""

    def __init__(self, store: Store, transport: Transport, sandbox: Transport, policy: RetryPolicy, clock: Clock,
                 wakeup: Wakeup, *, owner: str, concurrency: int = 64, batch_size: int = 256,
                 lease_seconds: float = 300.0, poll_seconds: float = 1.0,
                 return_paths: ReturnPaths | None = None, on_recorded: Callable[[], None] | None = None,
                 webhook_hints: WebhookHints | None = None, tracking_key: TrackingKey | None = None,
                 signer: MessageSigner | None = None) -> None:
        self.store = store
        self.transport = transport
        self.sandbox = sandbox
        self.policy = policy
        self.clock = clock
        self.wakeup = wakeup
        self.owner = owner
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.lease_micros = int(lease_seconds * 1_000_000)
        self.poll_seconds = poll_seconds
        self.return_paths = return_paths
        self.on_recorded = on_recorded  # results that queued webhook posts were recorded: the posts are due
        self.webhook_hints = webhook_hints
        self.tracking_key = tracking_key or TrackingKey(store)
        self.signer = signer  # DKIM (issue 14); None: nothing is signed
        self._stopping = asyncio.Event()
        self._results: list[DeliveryUpdate] = []
        # Rows claimed in the transaction that recorded earlier results, waiting for a free slot.
        self._prefetched: list[ClaimedDelivery] = []
        self._results_done: asyncio.Future[None] | None = None
        self._flushing = False

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.notify()

    async def run(self) -> None:
        """Claim, deliver, record, repeat; sleep until woken (new work) or the poll interval passes.

        Claims only as many rows as there are free delivery slots. Stops when `stop()` is called,
        after the deliveries in flight have finished and been recorded.
        """
        await self.store.listen_for_work(self.wakeup.notify)
        try:
            await self.tracking_key.get()  # now, so that the first tracked deliveries do not wait for it
        except StoreError as exc:
            log.warning("the tracking key will be read when first needed: %s", exc)
        # One SMTP transaction per message: rows of a message may come back in any order. With VERP,
        # one per recipient: each gets the return path that names it (`domain.verp`); so does a tracked
        # message whose content has placeholders, each recipient getting their own tokens.
        def per(d: ClaimedDelivery) -> tuple[str, int]:
            if self.return_paths is not None or (d.tracked and _PLACEHOLDER_MARK in d.content):
                return d.message_id, d.id
            return d.message_id, 0

        # Without VERP the rows of a message that fell due together go in one SMTP transaction, so claims
        # take whole messages and claimed-ahead rows are handed out by message, never split.
        whole = self.return_paths is None

        async def claim(limit: int) -> list[ClaimedDelivery]:
            if self._prefetched:
                taken, rest = self._prefetched[:limit], self._prefetched[limit:]
                if whole:
                    ids = {d.message_id for d in taken}
                    taken += [d for d in rest if d.message_id in ids]
                    rest = [d for d in rest if d.message_id not in ids]
                self._prefetched = rest
                return taken
            now = self.clock.micros()
            return await self.store.claim_deliveries(self.owner, now, limit, now + self.lease_micros, whole)

        def work(claimed: list[ClaimedDelivery]) -> Iterator[Coroutine[Any, Any, None]]:
            claimed.sort(key=per)
            return (self._deliver(list(rows)) for _, rows in groupby(claimed, key=per))

        await claim_loop(stopping=self._stopping, wakeup=self.wakeup, poll_seconds=self.poll_seconds,
                         concurrency=self.concurrency, batch_size=self.batch_size, claim=claim, work=work,
                         what="deliveries")
        if self._prefetched:  # claimed while stopping began: give them back, due now, for the next worker
            rows, self._prefetched = self._prefetched, []
            try:
                await self.store.release_claims(self.owner, [r.id for r in rows], self.clock.micros())
            except StoreError as exc:
                log.warning("%d claimed deliveries wait for their lease to expire: %s", len(rows), exc)

    async def _deliver(self, rows: Sequence[ClaimedDelivery]) -> None:
        """Send one message to its claimed recipients in one transaction, then record every outcome."""
        first = rows[0]
        transport = self.sandbox if first.sandboxed else self.transport
        result: AttemptResult | None = None
        error: str | None = None
        try:
            # VERP (docs/architecture.md §4, issue 5): bounces come back to an address that names this message,
            # at the From domain's own Return-Path domain once its CNAME is verified (issue 14).
            mail_from = await self.return_paths.address_for(first.id, first.sender) \
                if self.return_paths is not None else first.envelope_from
            content = first.content
            if first.tracked and len(rows) == 1:
                content = personalize(content, await self.tracking_key.get(), first.id)
            if self.signer is not None:
                # Signed last, over the exact bytes that go out (personalised); content every copy shares is
                # signed once for all of them.
                content = await self.signer.sign(content, first.from_email,
                                                 shared_as=first.message_id if content is first.content else None)
            envelope = Envelope(mail_from, [r.recipient for r in rows], content, first.stream)
            result = await transport.send(envelope)
        except DeliveryError as exc:
            error = str(exc) or exc.__class__.__name__
        except Exception as exc:
            log.exception("transport %s failed unexpectedly", transport.name)
            error = f"internal error: {exc.__class__.__name__}"
        now = self.clock.micros()
        server = result.server if result is not None else ""
        ip = result.ip if result is not None else ""
        replies = {row.recipient: self._reply_for(row, result, error) for row in rows}
        forced = result.bounce_types if result is not None else {}
        classified = {rcpt: Classification(Outcome.PERMANENT, forced[rcpt]) if rcpt in forced
                      else classify_reply(r.code, r.enhanced, r.text) for rcpt, r in replies.items()}
        # One retry time for the whole message (jitter drawn once, the longest hint wins), so the
        # recipients that failed together are claimed together and retried in one transaction.
        hints = [c.retry_after for c in classified.values() if c.retry_after is not None]
        delay = self.policy.delay_after(max(r.attempts for r in rows), max(hints, default=None))
        retry_at = now + int(delay * 1_000_000)
        # A Delivery payload is built only when a webhook of this stream asks for deliveries.
        announce = self.webhook_hints is None or await self.webhook_hints.wants(first.server_id, first.stream,
                                                                               "Delivery")
        reports = result.reports if result is not None else {}
        destinations = result.destinations if result is not None else {}
        await self._record([
            self._outcome(row, replies[row.recipient], classified[row.recipient],
                          *destinations.get(row.recipient, (server, ip)), retry_at, now, announce,
                          reports.get(row.recipient, b""))
            for row in rows])

    @staticmethod
    def _reply_for(row: ClaimedDelivery, result: AttemptResult | None, error: str | None) -> Reply:
        reply = result.replies.get(row.recipient) if result is not None else None
        if reply is None:  # no conversation, or no reply for this recipient: a local, transient failure
            reply = Reply(451, f"4.4.0 {error or 'no reply for this recipient'}", "4.4.0")
        return reply

    async def _record(self, updates: list[DeliveryUpdate]) -> None:
        """Queue results; one flush records everything that finished meanwhile in one transaction."""
        if self._results_done is None:
            self._results_done = asyncio.get_running_loop().create_future()
        done = self._results_done
        self._results.extend(updates)
        if not self._flushing:
            self._flushing = True
            asyncio.create_task(self._flush_results())  # noqa: RUF006 — awaited through `done`
        await asyncio.shield(done)

    async def _flush_results(self) -> None:
        """Write queued results until none are left; a failed write is retried, then given up: the leases
        then expire and the rows are tried again (at least once, never lost). Whatever happens, every
        waiting delivery is woken (`finally`): an unexpected error must not leave its slots taken forever."""
        try:
            while self._results:
                batch, done = self._results, self._results_done
                self._results, self._results_done = [], None
                assert done is not None
                try:
                    await self._write_results(batch)
                except Exception:  # not a store error: a bug; the rows come back when their leases expire
                    log.exception("recording %d delivery results failed unexpectedly; their rows are tried again "
                                  "when their leases expire", len(batch))
                finally:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flushing = False
            # Left only by a cancelled flush: nobody would ever write these or wake their deliveries.
            leftover, waiting = self._results, self._results_done
            self._results, self._results_done = [], None
            if leftover:
                log.warning("%d delivery results not recorded (the flush was cancelled); their rows are tried "
                            "again when their leases expire", len(leftover))
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

    async def _write_results(self, batch: list[DeliveryUpdate]) -> None:
        """Record one batch of results (up to three tries), claiming rows for the slots they free."""
        for attempt in range(3):
            try:
                # The results' slots are about to free up: claim as many rows for them in the same
                # transaction (one commit, not two), unless the worker is stopping.
                # Rows already claimed ahead count against it, so claims ahead never pile up.
                now = self.clock.micros()
                room = min(self.batch_size, len(batch)) - len(self._prefetched)
                wanted = None if self._stopping.is_set() or room <= 0 else \
                    (self.owner, now, room, now + self.lease_micros, self.return_paths is None)
                claimed = await self.store.record_attempts(batch, claim=wanted)
                # Only now read `_prefetched`: the claim loop replaces the list while this awaits.
                self._prefetched.extend(claimed)
                if wanted is not None:
                    self.wakeup.notify()
                # Only results with events can have queued posts; waking the dispatcher for the
                # others would cost it an empty claim (a write transaction) per flush.
                if self.on_recorded is not None and any(u.webhook_events or u.suppression for u in batch):
                    self.on_recorded()
                return
            except StoreError as exc:
                log.error("recording %d delivery results failed (try %d): %s", len(batch), attempt + 1, exc)
                await asyncio.sleep(0.5 * (attempt + 1))

    def _outcome(self, row: ClaimedDelivery, reply: Reply, classification: Classification, server: str, ip: str,
                 retry_at: int, now: int, announce: bool = True, report: bytes = b"") -> DeliveryUpdate:
        """What one recipient's reply means; `report` is a bounce message the transport wrote (the dump)."""
        text = str(reply)
        delivery_details = {"DeliveryMessage": text, "DestinationServer": server, "DestinationIP": ip}
        if classification.outcome is Outcome.DELIVERED:
            events = [notifications.delivery_event(
                server_id=row.server_id, stream=row.stream, message_id=row.message_id, recipient=row.recipient,
                tag=row.tag, metadata=row.metadata, details=text, at=now)] if announce else []
            return DeliveryUpdate(row, self.owner, DeliveryState.DELIVERED, now, text, EventType.DELIVERED,
                                  delivery_details, now, webhook_events=events)
        if classification.outcome is Outcome.TRANSIENT:
            # A scheduled message's age starts at its release, not its acceptance (review finding).
            age = (now - max(row.received_at, row.send_at or 0)) / 1_000_000
            if not self.policy.is_expired(age):
                return DeliveryUpdate(row, self.owner, DeliveryState.DEFERRED, retry_at, text,
                                      EventType.TRANSIENT, delivery_details, now)
            bounce_type = BounceType.SOFT_BOUNCE
            text = f"gave up after {row.attempts} attempts over {age / 3600:.1f} h; last reply: {text}"
        else:
            bounce_type = classification.bounce_type or BounceType.UNKNOWN
        bounce = BounceRecord(
            server_id=row.server_id, message_id=row.message_id, stream=row.stream, type=bounce_type.type_name,
            type_code=bounce_type.code, email=row.recipient, sender=row.sender, subject=row.subject, tag=row.tag,
            description=_DESCRIPTIONS.get(bounce_type, bounce_type.display_name), details=text, bounced_at=now,
            inactive=bounce_type.deactivates, can_activate=bounce_type is BounceType.HARD_BOUNCE,
            dump=report.decode("utf-8", "replace"))
        summary = f"{bounce_type.display_name}: {text}"
        return DeliveryUpdate(row, self.owner, DeliveryState.BOUNCED, now, text, EventType.BOUNCED,
                              {"Summary": summary}, now, bounce,
                              webhook_events=[notifications.bounce_event(bounce, row.metadata)],
                              suppression=notifications.suppression_for(bounce, row.tag, row.metadata))

