"""Accepting mail: `SendingService.accept` is the one entry point for every message (DESIGN §1, §2).

Validation happens first, so a bad request gets its ErrorCode and nothing is stored. Then every
valid message of the call is inserted in one durable transaction (which the store group-commits with
concurrent calls), and only then is the answer built. The workers are woken after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from posthouse import wire
from posthouse.server.domain.messages import ComposedMessage, compose
from posthouse.server.domain.submission import compose_submitted
from posthouse.server.errors import ApiError
from posthouse.server.services.accounts import AccountService, Server
from posthouse.server.services.clock import Clock
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.store.base import Store

MAX_BATCH = 500
TEST_TOKEN = "POSTMARK_API_TEST"  # noqa: S105 — a public, documented name, not a secret; validate and answer, store and deliver nothing (POSTMARK-API.md §1.1)
NIL_MESSAGE_ID = "00000000-0000-0000-0000-000000000000"


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
        if server is not None:
            await self._store(server, [message])
        return self._ok(message, request, test=server is None)

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
        if server is not None and accepted:
            await self._store(server, accepted)
        it = iter(accepted)
        out: list[wire.SendResponse] = []
        for request, result in zip(requests, results, strict=True):
            out.append(result if result is not None else self._ok(next(it), request, test=server is None))
        return out

    async def send_submitted(self, server: Server, mail_from: str, recipients: Sequence[str], data: bytes,
                             received: str | None = None) -> str:
        """A message submitted over SMTP: the same checks, commit and wake-up as the API; its MessageID.
        `received` is the trace text for the Received header ("from … by … with …")."""
        message = compose_submitted(data, mail_from=mail_from, recipients=recipients, now=self.clock.now(),
                                    message_id_domain=self.message_id_domain, received=received)
        await self.accounts.sending_stream(server.id, message.stream)
        await self._store(server, [message])
        return message.message_id

    async def _store(self, server: Server, messages: list[ComposedMessage]) -> None:
        await self.store.insert_messages(server.id, messages, sandboxed=self.sandbox_all or server.is_sandbox,
                                         now=self.clock.micros())
        self.wakeup.notify()

    @staticmethod
    def _ok(message: ComposedMessage, request: wire.EmailRequest, *, test: bool) -> wire.SendResponse:
        return wire.SendResponse(
            to=request.to or "", submitted_at=message.received_at.isoformat(), message_id=message.message_id,
            error_code=0, message="Test job accepted" if test else "OK")
