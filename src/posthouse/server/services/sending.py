"""Accepting mail: `SendingService.accept` is the one entry point for every message (docs/architecture.md §1, §2).

Validation happens first, so a bad request gets its ErrorCode and nothing is stored. Then every
valid message of the call is inserted in one durable transaction (which the store group-commits with
concurrent calls), and only then is the answer built. The workers are woken after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from posthouse import wire
from posthouse.server.domain.links import TrackingSettings
from posthouse.server.domain.messages import ComposedMessage, compose, parse_send_at
from posthouse.server.domain.statuses import BounceType, MessageStatus
from posthouse.server.domain.submission import compose_submitted, track_submitted
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services import notifications
from posthouse.server.services.accounts import AccountService, Server
from posthouse.server.services.clock import Clock
from posthouse.server.services.hints import SuppressionHints
from posthouse.server.services.idempotency import IdempotencyService
from posthouse.server.services.sender_policy import SenderPolicy
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.store.base import BounceRecord, MessageRecord, Stmt, Store, WebhookEvent
from posthouse.server.store.idempotency import IdempotencyKey, finish_stmt

MAX_BATCH = 500
TEST_TOKEN = "POSTMARK_API_TEST"  # noqa: S105 — a public, documented name, not a secret; validate and answer, store and deliver nothing (docs/postmark-api.md §1.1)
NIL_MESSAGE_ID = "00000000-0000-0000-0000-000000000000"


INACTIVE_EXPLANATION = ("Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual "
                        "suppression.")


def inactive_message(addresses: Sequence[str], *, batch: bool) -> str:
    """Postmark's ErrorCode 406 text: the SDKs pull the addresses out of it (docs/postmark-api.md §2.6)."""
    found = ", ".join(addresses)
    if batch:
        return (f"You tried to send to a recipient that has been marked as inactive. Found inactive addresses: "
                f"{found}. {INACTIVE_EXPLANATION} ")
    return f"You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: {found}. " \
        f"{INACTIVE_EXPLANATION}"


class SendingService:
    def __init__(self, store: Store, accounts: AccountService, clock: Clock, wakeup: Wakeup, *,
                 sandbox_all: bool, message_id_domain: str = "posthouse",
                 max_schedule_ahead: float = 30 * 86400, tracking_base_url: str = "http://127.0.0.1:8081") -> None:
        self.max_schedule_ahead = max_schedule_ahead
        self.tracking_base_url = tracking_base_url.rstrip("/")
        self.idempotency = IdempotencyService(store, clock)
        self.hints: SuppressionHints | None = SuppressionHints(store)
        self.sender_policy: SenderPolicy | None = None  # which From addresses may send (set by the Runtime)
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self.wakeup = wakeup
        self.sandbox_all = sandbox_all
        self.message_id_domain = message_id_domain

    def _tracking(self, server: Server) -> TrackingSettings:
        """The server's tracking defaults (TrackOpens, TrackLinks) and where tracked links point."""
        settings = server.settings
        return TrackingSettings(self.tracking_base_url, bool(settings.get("track_opens", False)),
                                str(settings.get("track_links") or "None"))

    async def _compose(self, server: Server | None, request: wire.EmailRequest) -> ComposedMessage:
        # The test token stores nothing, so its messages are not tracked (their TrackOpens/TrackLinks echo).
        message = compose(request, now=self.clock.now(), message_id_domain=self.message_id_domain,
                          tracking=self._tracking(server) if server is not None else None)
        self._check_schedule(message)
        if server is not None:
            await self.accounts.sending_stream(server.id, message.stream)
            if self.sender_policy is not None:  # not for the test token (services/sender_policy.py)
                await self.sender_policy.check(message.sender.email, request.sender or message.sender.email)
        return message

    def _check_schedule(self, message: ComposedMessage) -> None:
        if message.send_at is not None and \
                (message.send_at - message.received_at).total_seconds() > self.max_schedule_ahead:
            days = self.max_schedule_ahead / 86400
            raise ApiError(300, f"'SendAt' may be at most {days:g} days ahead.")

    # -- scheduled messages: cancel and reschedule (Posthouse extensions) ---------------------

    async def cancel(self, server: Server, message_id: str) -> wire.ScheduleChange:
        """Cancel what has not been released. The answer says which recipients were cancelled and which
        were already released (claimed by a worker): a message is never both cancelled and sent."""
        record = await self._message(server, message_id)
        cancelled, released = await self.store.cancel_message(server.id, record.message_id, self.clock.micros())
        if not cancelled:
            if record.status == MessageStatus.CANCELLED:
                raise ApiError(1602, f"The message '{record.message_id}' is already cancelled.")
            raise ApiError(1601, f"The message '{record.message_id}' was already released for delivery; "
                                 "it cannot be cancelled.")
        status = MessageStatus.CANCELLED.value if not released else "PartiallyCancelled"
        message = "OK" if not released else f"Cancelled for {', '.join(cancelled)}; already released for " \
            f"{', '.join(released)}."
        return wire.ScheduleChange(message_id=record.message_id, status=status, cancelled=cancelled,
                                   released=released, message=message)

    async def reschedule(self, server: Server, message_id: str, request: wire.ScheduleRequest) -> wire.ScheduleChange:
        """Move an unreleased message to a new SendAt (a past one releases it now)."""
        send_at = parse_send_at(request.send_at)
        if send_at is None:
            raise ApiError(300, "'SendAt' is required.")
        now = self.clock.now()
        if (send_at - now).total_seconds() > self.max_schedule_ahead:
            raise ApiError(300, f"'SendAt' may be at most {self.max_schedule_ahead / 86400:g} days ahead.")
        record = await self._message(server, message_id)
        micros = int(send_at.timestamp() * 1_000_000)
        moved = await self.store.reschedule_message(server.id, record.message_id, micros, self.clock.micros())
        if not moved:
            raise ApiError(1601, f"The message '{record.message_id}' was already released for delivery or "
                                 "cancelled; it cannot be rescheduled.")
        self.wakeup.notify()
        status = MessageStatus.SCHEDULED if send_at > now else MessageStatus.QUEUED
        return wire.ScheduleChange(message_id=record.message_id, status=status.value, send_at=send_at.isoformat())

    async def _message(self, server: Server, message_id: str) -> MessageRecord:
        record = await self.store.get_message(server.id, message_id.strip().lower())
        if record is None:
            raise NotFoundError(701, f"The message '{message_id}' was not found.")
        return record

    async def send(self, server: Server | None, request: wire.EmailRequest, *,
                   idempotency: IdempotencyKey | None = None) -> wire.SendResponse:
        """`POST /email`: raises ApiError when refused; `server=None` is the test token. With an
        idempotency key held, the answer is recorded in the transaction that stores the message."""
        message = await self._compose(server, request)
        response = self._ok(message, request, test=server is None)
        if server is not None:
            suppressed = await self._suppressed(server, [message])
            skipped = suppressed.get(message.message_id, set())
            if skipped and len(skipped) == len(message.recipients):
                raise ApiError(406, inactive_message(sorted(skipped), batch=False))
            if skipped:
                # Postmark's words for a partly suppressed message (docs/postmark-api.md §2.6), with the
                # sentence after the list that django-anymail's parser needs to find where the list ends
                # (its recorded Postmark answer has it); the SDKs' patterns accept it too.
                listed = ", ".join(sorted(skipped))
                response.message = (f"Message OK, but will not deliver to these inactive addresses: {listed}. "
                                    f"{INACTIVE_EXPLANATION}")
            await self._store(server, [message], suppressed, extra=self._answer(idempotency, response))
        return response

    async def send_batch(self, server: Server | None, requests: Sequence[wire.EmailRequest], *,
                         idempotency: IdempotencyKey | None = None,
                         commit_with: Callable[[list[wire.SendResponse]], Sequence[Stmt]] | None = None
                         ) -> list[wire.SendResponse]:
        """`POST /email/batch`: per-item results in request order, one commit for all valid items (and
        the idempotency key's answer, when one is held)."""
        if len(requests) > MAX_BATCH:
            raise ApiError(410, f"You may only send up to {MAX_BATCH} messages in a single batched request.")
        results: list[wire.SendResponse | None] = []
        accepted: list[ComposedMessage] = []
        for request in requests:
            try:
                message = await self._compose(server, request)
            except ApiError as exc:
                results.append(self._failed(request, exc.error_code, exc.message))
                continue
            accepted.append(message)
            results.append(None)
        suppressed: dict[str, set[str]] = {}
        if server is not None and accepted:
            suppressed = await self._suppressed(server, accepted)
        it = iter(accepted)
        out: list[wire.SendResponse] = []
        to_store: list[ComposedMessage] = []
        for request, result in zip(requests, results, strict=True):
            if result is None:
                message = next(it)
                skipped = suppressed.get(message.message_id)
                if skipped and len(skipped) == len(message.recipients):
                    result = self._failed(request, 406, inactive_message(sorted(skipped), batch=True))
                else:
                    result = self._ok(message, request, test=server is None)
                    to_store.append(message)
            out.append(result)
        if server is not None:
            # `commit_with`: statements that must commit with these messages or not at all (bulk progress).
            extra = [*self._answer(idempotency, out), *(commit_with(out) if commit_with is not None else ())]
            if to_store:
                await self._store(server, to_store, suppressed, extra=extra)
            elif extra:
                await self.store.transact(extra)
        return out

    def _failed(self, request: wire.EmailRequest, error_code: int, message: str) -> wire.SendResponse:
        # Failed items carry every key postmark-python requires (docs/postmark-api.md §2.2 compat).
        return wire.SendResponse(to=request.to or "", submitted_at=self.clock.now().isoformat(),
                                 message_id=NIL_MESSAGE_ID, error_code=error_code, message=message)

    @staticmethod
    def _answer(held: IdempotencyKey | None, response: object) -> list[Stmt]:
        """The statement that records this answer for the key, in the transaction that stores the mail."""
        return finish_stmt(held, 200, wire.encoder.encode(response)) if held is not None else []

    async def send_submitted(self, server: Server, mail_from: str, recipients: Sequence[str], data: bytes,
                             received: str | None = None) -> str:
        """A message submitted over SMTP: the same checks, commit and wake-up as the API; its MessageID.
        `received` is the trace text for the Received header ("from … by … with …")."""
        message = compose_submitted(data, mail_from=mail_from, recipients=recipients, now=self.clock.now(),
                                    message_id_domain=self.message_id_domain, received=received)
        self._check_schedule(message)
        await self.accounts.sending_stream(server.id, message.stream)
        if self.sender_policy is not None:
            await self.sender_policy.check(message.sender.email, str(message.sender))
        message = track_submitted(message, self._tracking(server))
        suppressed = await self._suppressed(server, [message])
        now = self.clock.micros()
        # Over SMTP there is no answer per recipient to carry the refusal: a suppressed recipient is
        # not delivered and gets an SMTPApiError bounce record instead (issue 5).
        bounce_type = BounceType.SMTP_API_ERROR
        bounces = [BounceRecord(
            server_id=server.id, message_id=message.message_id, stream=message.stream, type=bounce_type.type_name,
            type_code=bounce_type.code, email=rcpt, sender=message.sender.email, subject=message.subject,
            tag=message.tag, description="The address is inactive in this message stream; the message was not "
            "sent to it.", details=f"{rcpt} is suppressed (a hard bounce, a spam complaint or a manual "
            "suppression).", bounced_at=now, inactive=True, can_activate=False, dump="")
            for rcpt in message.recipients if rcpt.lower() in suppressed.get(message.message_id, set())]
        # Postmark posts these to Bounce webhooks only when the server enables SMTP API error hooks.
        events = [notifications.bounce_event(b, message.metadata) for b in bounces] \
            if server.settings.get("enable_smtp_api_error_hooks") else []
        await self._store(server, [message], suppressed, bounces, events)
        return message.message_id

    async def _suppressed(self, server: Server, messages: Sequence[ComposedMessage]) -> dict[str, set[str]]:
        """Recipients each message's stream suppresses (lower-cased), by message id: one read per call,
        none when no stream of these messages has any suppression (`hints`)."""
        if self.hints is not None and not await self.hints.may_suppress(server.id, {m.stream for m in messages}):
            return {}
        pairs = await self.store.suppressed_in_any_stream(
            server.id, [r.lower() for m in messages for r in m.recipients])
        if not pairs:
            return {}
        found: dict[str, set[str]] = {}
        for m in messages:
            hit = {r.lower() for r in m.recipients if (m.stream, r.lower()) in pairs}
            if hit:
                found[m.message_id] = hit
        return found

    async def _store(self, server: Server, messages: list[ComposedMessage],
                     suppressed: dict[str, set[str]] | None = None, bounces: Sequence[BounceRecord] = (),
                     bounce_events: Sequence[WebhookEvent] = (), extra: Sequence[Stmt] = ()) -> None:
        await self.store.insert_messages(server.id, messages, sandboxed=self.sandbox_all or server.is_sandbox,
                                         now=self.clock.micros(), suppressed=suppressed, bounces=bounces,
                                         bounce_events=bounce_events, extra=extra)
        self.wakeup.notify()

    @staticmethod
    def _ok(message: ComposedMessage, request: wire.EmailRequest, *, test: bool) -> wire.SendResponse:
        return wire.SendResponse(
            to=request.to or None, submitted_at=message.received_at.isoformat(), message_id=message.message_id,
            error_code=0, message="Test job accepted" if test else "OK")
