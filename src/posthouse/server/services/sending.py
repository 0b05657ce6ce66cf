"""Accepting mail: `SendingService.accept` is the one entry point for every message (DESIGN §1, §2).

Validation happens first, so a bad request gets its ErrorCode and nothing is stored. Then every
valid message of the call is inserted in one durable transaction (which the store group-commits with
concurrent calls), and only then is the answer built. The workers are woken after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from posthouse import wire
from posthouse.server.domain.messages import ComposedMessage, compose
from posthouse.server.domain.statuses import BounceType
from posthouse.server.domain.submission import compose_submitted
from posthouse.server.errors import ApiError
from posthouse.server.services.accounts import AccountService, Server
from posthouse.server.services.clock import Clock
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.store.base import BounceRecord, Store

MAX_BATCH = 500
TEST_TOKEN = "POSTMARK_API_TEST"  # noqa: S105 — a public, documented name, not a secret; validate and answer, store and deliver nothing (POSTMARK-API.md §1.1)
NIL_MESSAGE_ID = "00000000-0000-0000-0000-000000000000"


def inactive_message(addresses: Sequence[str], *, batch: bool) -> str:
    """Postmark's ErrorCode 406 text: the SDKs pull the addresses out of it (POSTMARK-API.md §2.6)."""
    found = ", ".join(addresses)
    explanation = ("Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual "
                   "suppression.")
    if batch:
        return (f"You tried to send to a recipient that has been marked as inactive. Found inactive addresses: "
                f"{found}. {explanation} ")
    return f"You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: {found}. " \
        f"{explanation}"


class SendingService:
    def __init__(self, store: Store, accounts: AccountService, clock: Clock, wakeup: Wakeup, *,
                 sandbox_all: bool, message_id_domain: str = "posthouse") -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self.wakeup = wakeup
        self.sandbox_all = sandbox_all
        self.message_id_domain = message_id_domain

    async def _compose(self, server: Server | None, request: wire.EmailRequest) -> ComposedMessage:
        message = compose(request, now=self.clock.now(), message_id_domain=self.message_id_domain)
        if server is not None:
            await self.accounts.sending_stream(server.id, message.stream)
        return message

    async def send(self, server: Server | None, request: wire.EmailRequest) -> wire.SendResponse:
        """`POST /email`: raises ApiError when refused; `server=None` is the test token."""
        message = await self._compose(server, request)
        skipped: set[str] = set()
        if server is not None:
            suppressed = await self._suppressed(server, [message])
            skipped = suppressed.get(message.message_id, set())
            if skipped and len(skipped) == len(message.recipients):
                raise ApiError(406, inactive_message(sorted(skipped), batch=False))
            await self._store(server, [message], suppressed)
        response = self._ok(message, request, test=server is None)
        if skipped:
            # Postmark's words for a partly suppressed message (POSTMARK-API.md §2.6).
            listed = ", ".join(sorted(skipped))
            response.message = f"Message OK, but will not deliver to these inactive addresses: {listed}."
        return response

    async def send_batch(self, server: Server | None, requests: Sequence[wire.EmailRequest]
                         ) -> list[wire.SendResponse]:
        """`POST /email/batch`: per-item results in request order, one commit for all valid items."""
        if len(requests) > MAX_BATCH:
            raise ApiError(410, f"You may only send up to {MAX_BATCH} messages in a single batched request.")
        results: list[wire.SendResponse | None] = []
        accepted: list[ComposedMessage] = []
        for request in requests:
            try:
                message = await self._compose(server, request)
            except ApiError as exc:
                # Failed items carry every key postmark-python requires (POSTMARK-API.md §2.2 compat).
                results.append(wire.SendResponse(
                    to=request.to or "", submitted_at=self.clock.now().isoformat(), message_id=NIL_MESSAGE_ID,
                    error_code=exc.error_code, message=exc.message))
                continue
            accepted.append(message)
            results.append(None)
        suppressed: dict[str, set[str]] = {}
        if server is not None and accepted:
            suppressed = await self._suppressed(server, accepted)
            refused = {m.message_id for m in accepted
                       if len(suppressed.get(m.message_id, ())) == len(m.recipients)}
            to_store = [m for m in accepted if m.message_id not in refused]
            if to_store:
                await self._store(server, to_store, suppressed)
        it = iter(accepted)
        out: list[wire.SendResponse] = []
        for request, result in zip(requests, results, strict=True):
            if result is None:
                message = next(it)
                skipped = suppressed.get(message.message_id)
                if skipped and len(skipped) == len(message.recipients):
                    result = wire.SendResponse(
                        to=request.to or "", submitted_at=self.clock.now().isoformat(), message_id=NIL_MESSAGE_ID,
                        error_code=406, message=inactive_message(sorted(skipped), batch=True))
                else:
                    result = self._ok(message, request, test=server is None)
            out.append(result)
        return out

    async def send_submitted(self, server: Server, mail_from: str, recipients: Sequence[str], data: bytes,
                             received: str | None = None) -> str:
        """A message submitted over SMTP: the same checks, commit and wake-up as the API; its MessageID.
        `received` is the trace text for the Received header ("from … by … with …")."""
        message = compose_submitted(data, mail_from=mail_from, recipients=recipients, now=self.clock.now(),
                                    message_id_domain=self.message_id_domain, received=received)
        await self.accounts.sending_stream(server.id, message.stream)
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
        await self._store(server, [message], suppressed, bounces)
        return message.message_id

    async def _suppressed(self, server: Server, messages: Sequence[ComposedMessage]) -> dict[str, set[str]]:
        """Recipients each message's stream suppresses (lower-cased), by message id: one read per call."""
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
                     suppressed: dict[str, set[str]] | None = None, bounces: Sequence[BounceRecord] = ()) -> None:
        await self.store.insert_messages(server.id, messages, sandboxed=self.sandbox_all or server.is_sandbox,
                                         now=self.clock.micros(), suppressed=suppressed, bounces=bounces)
        self.wakeup.notify()

    @staticmethod
    def _ok(message: ComposedMessage, request: wire.EmailRequest, *, test: bool) -> wire.SendResponse:
        return wire.SendResponse(
            to=request.to or "", submitted_at=message.received_at.isoformat(), message_id=message.message_id,
            error_code=0, message="Test job accepted" if test else "OK")
