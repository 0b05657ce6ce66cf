"""The sandbox transport: accept every recipient and deliver nowhere; the stored message is the copy to view.

Bounce testing, as on Postmark (docs/postmark-api.md §2.7): a recipient `<Type>@<bounce testing domain>`,
or the header `X-PM-Bounce-Type: <Type>`, makes the attempt bounce with that type, so an application
can see the events, suppression and webhooks of a bounce without a real receiver. Each simulated bounce
comes with the DSN (RFC 3464) a receiving system would have sent back, kept as the bounce's dump.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from posthouse.server.delivery.base import AttemptResult, Envelope
from posthouse.server.delivery.smtp_client import Reply
from posthouse.server.domain.dsn import FailedRecipient, build_dsn
from posthouse.server.domain.statuses import BounceType

_SANDBOX_REPLY = Reply(250, "2.0.0 Ok: kept in the sandbox, not delivered", "2.0.0")
_BOUNCE_HEADER = re.compile(rb"^x-pm-bounce-type:[ \t]*([A-Za-z]+)[ \t]*\r?$", re.I | re.M)


def _bounce_type(name: str) -> BounceType:
    try:
        return BounceType.from_type_name(name)
    except ValueError:
        return BounceType.HARD_BOUNCE  # Postmark's default for an unknown type


class SandboxTransport:
    name = "sandbox"

    def __init__(self, bounce_testing_domain: str = "", hostname: str = "localhost",
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.bounce_testing_domain = bounce_testing_domain.lower()
        self.hostname = hostname  # the Reporting-MTA of the simulated bounces' reports
        self.now = now

    async def send(self, envelope: Envelope) -> AttemptResult:
        header_end = envelope.data.find(b"\r\n\r\n")
        header = _BOUNCE_HEADER.search(envelope.data[:header_end if header_end >= 0 else len(envelope.data)])
        replies: dict[str, Reply] = {}
        types: dict[str, BounceType] = {}
        reports: dict[str, bytes] = {}
        for rcpt in envelope.recipients:
            local, _, domain = rcpt.rpartition("@")
            bounce_type = None
            if self.bounce_testing_domain and domain.lower() == self.bounce_testing_domain:
                bounce_type = _bounce_type(local)
            elif header is not None:
                bounce_type = _bounce_type(header.group(1).decode("ascii"))
            if bounce_type is None:
                replies[rcpt] = _SANDBOX_REPLY
            else:
                types[rcpt] = bounce_type
                reply = Reply(550, f"5.0.0 Simulated {bounce_type.type_name} bounce (bounce testing)", "5.0.0")
                replies[rcpt] = reply
                reports[rcpt] = build_dsn(
                    reporting_mta=self.hostname, return_path=envelope.mail_from,
                    recipients=[FailedRecipient(rcpt, reply.enhanced or "5.0.0", str(reply))],
                    original=envelope.data, now=self.now(),
                    explanation=f"This is Posthouse's sandbox at {self.hostname}. Bounce testing: the message "
                    f"was not delivered to the recipient below, as if it had bounced ({bounce_type.type_name}).")
        return AttemptResult(replies, "sandbox", "127.0.0.1", types, reports)

    async def close(self) -> None:
        return None
