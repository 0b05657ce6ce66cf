"""The transport interface: hand one message to its next hop and report a reply per recipient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from posthouse.server.delivery.smtp_client import Reply
from posthouse.server.domain.statuses import BounceType


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str
    recipients: Sequence[str]
    data: bytes
    stream: str = ""  # the message stream's ID (MX delivery picks the source address pool by it)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """Replies per recipient, and where the message went (for `DestinationServer`/`DestinationIP`)."""

    replies: dict[str, Reply]
    server: str
    ip: str
    # A bounce type the transport already knows (the sandbox's bounce testing), instead of classifying.
    bounce_types: dict[str, BounceType] = field(default_factory=dict)
    # The bounce message (an RFC 3464 report) the transport wrote for a recipient, kept as the bounce's dump.
    reports: dict[str, bytes] = field(default_factory=dict)
    # Where each recipient's reply came from when they differ (MX delivery: one MX per recipient domain):
    # recipient → (server, ip); recipients not named here have `server` and `ip`.
    destinations: dict[str, tuple[str, str]] = field(default_factory=dict)


class Transport(Protocol):
    """`send` returns replies (a refusal is a value); it raises DeliveryError when no reply came."""

    name: str

    async def send(self, envelope: Envelope) -> AttemptResult: ...

    async def close(self) -> None: ...
