"""The sandbox transport: accept every recipient and deliver nowhere; the stored message is the copy to view."""

from __future__ import annotations

from posthouse.server.delivery.base import AttemptResult, Envelope
from posthouse.server.delivery.smtp_client import Reply

_SANDBOX_REPLY = Reply(250, "2.0.0 Ok: kept in the sandbox, not delivered", "2.0.0")


class SandboxTransport:
    name = "sandbox"

    async def send(self, envelope: Envelope) -> AttemptResult:
        return AttemptResult({r: _SANDBOX_REPLY for r in envelope.recipients}, "sandbox", "127.0.0.1")

    async def close(self) -> None:
        return None
