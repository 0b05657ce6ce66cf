"""What the SMTP submission server asks of the rest of Posthouse: the handler interface.

The server (`smtp.server`, around the sans-I/O `smtp.session`) owns the protocol and never touches
the database; every decision that needs Posthouse's state is one of these three calls. The
implementation lives in `services.submission`. When a call raises, the client hears a 4xx
(`451 4.3.0` for `deliver`, `454 4.7.0` for `authenticate`), never a 2xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Peer:
    """The client's address, and whether the connection is encrypted at the time of the call."""

    host: str
    port: int
    is_tls: bool
    helo: str = ""  # the client's HELO/EHLO name, once known (given to `deliver`)


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """A reply to send: `code` and text starting with the enhanced status code ("2.0.0 Ok: …")."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class _InboundBounce:
    """The identity of an unauthenticated client sending to the return-path domain (a bounce)."""

    def __repr__(self) -> str:
        return "INBOUND_BOUNCE"


INBOUND_BOUNCE = _InboundBounce()
"""`deliver` receives this identity for mail to the return-path domain: bounces, not submissions."""


class SubmissionHandler(Protocol):
    """Policy for submitted mail. `identity` is opaque to the SMTP server (a Posthouse server)."""

    async def identify_network(self, peer: Peer) -> object | None:
        """At connect: the identity a trusted client network submits as without AUTH, else None."""
        ...

    async def authenticate(self, peer: Peer, mechanism: str, username: str, password: str) -> object | None:
        """AUTH PLAIN/LOGIN: the identity these credentials name, or None (the server answers 535 5.7.8)."""
        ...

    async def deliver(self, identity: object, mail_from: str, recipients: Sequence[str], data: bytes,
                      peer: Peer) -> SmtpReply:
        """End of DATA: accept durably and answer 250, or refuse with a 4xx/5xx reply."""
        ...
