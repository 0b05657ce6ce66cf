"""Bounces that come back later: mail to a VERP return path, read (`domain.bounces`) and attributed.

Attribution comes from the return path, never from the bounce's body: the token names one delivery
(a message to one recipient) and proves we made it, so the bounce is that recipient's, whoever the
report names (a forwarded address bounces under its new name). The report gives the type and the
details: its entry for that recipient if it has one, else its first. A return path that names no
delivery of ours is refused; a message we cannot read as a bounce is discarded and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from posthouse.server.domain.bounces import BouncedRecipient, BounceReport, ReportKind, parse_report
from posthouse.server.domain.statuses import BounceType, EventType
from posthouse.server.services import notifications
from posthouse.server.services.clock import Clock
from posthouse.server.services.returnpaths import ReturnPaths
from posthouse.server.smtp.handler import SmtpReply
from posthouse.server.store.base import BounceRecord, MessageRecord, Store, Suppression, WebhookEvent

log = logging.getLogger("posthouse.bounces")
MAX_DUMP = 256 * 1024  # the raw bounce kept for `/bounces/{id}/dump`, at most
_NO_SUCH_ADDRESS = SmtpReply(550, "5.1.1 No such return path here")
RECORDED = SmtpReply(250, "2.0.0 Ok: bounce recorded")
# A bounce as the store records it: the record, its message event, its webhooks and its suppression.
Bounce = tuple[BounceRecord, tuple[str, str] | None, list[WebhookEvent], Suppression | None]
_DISCARDED = SmtpReply(250, "2.0.0 Ok: received, not attributed to any message")


class BounceReceiver:
    def __init__(self, store: Store, return_paths: ReturnPaths, clock: Clock) -> None:
        self.store = store
        self.return_paths = return_paths
        self.clock = clock

    def is_bounce(self, recipients: Sequence[str]) -> bool:
        """Mail whose every recipient is at a return-path domain (ours, or a sending domain's own) is a bounce,
        whoever sends it."""
        return bool(recipients) and all(self.return_paths.is_return_address(r) for r in recipients)

    async def receive(self, recipients: Sequence[str], data: bytes, peer_host: str) -> SmtpReply:
        """Record what a bounce says about the messages its return paths name; 550 when none is ours."""
        found = await self.read(recipients, data, peer_host)
        if isinstance(found, SmtpReply):
            return found
        await self.store.record_bounces(found)
        return RECORDED

    async def read(self, recipients: Sequence[str], data: bytes, peer_host: str) -> SmtpReply | list[Bounce]:
        """What `receive` would record (the store's `bounce_stmts` writes it), or the reply when there is
        nothing to record: 550 when no return path is ours, 250 when the message is not a bounce we can
        read or names no delivery still stored."""
        return_path = await self.return_paths.get()
        custom = self.return_paths.custom_domains
        deliveries = sorted({d for r in recipients if (d := return_path.delivery_id_from(r, custom)) is not None})
        if not deliveries:
            log.warning("bounce from %s to %s refused: not a return path of ours (forged or mistyped)",
                        peer_host, ", ".join(recipients))
            return _NO_SUCH_ADDRESS
        report = parse_report(data)
        if report.kind is ReportKind.UNRECOGNISED:
            log.warning("mail from %s to return path(s) of deliveries %s discarded: not a bounce we can read",
                        peer_host, deliveries)
            return _DISCARDED
        now = self.clock.micros()
        records: list[Bounce] = []
        for delivery_id in deliveries:
            found = await self.store.find_delivery(delivery_id)
            message = await self.store.find_message(found[0]) if found is not None else None
            if found is None or message is None:
                log.warning("bounce from %s names delivery %d, which is not stored (deleted?)", peer_host, delivery_id)
                continue
            records.append(self._record(message, report, _attribute(report, found[1]), data, now))
        return records or _DISCARDED

    def _record(self, message: MessageRecord, report: BounceReport, found: BouncedRecipient, data: bytes, now: int
                ) -> Bounce:
        bounce_type = found.bounce_type
        details = _clean(found.diagnostic or report.description)
        if found.status:
            details = f"{found.status} {details}" if not details.startswith(found.status) else details
        bounce = BounceRecord(
            server_id=message.server_id, message_id=message.message_id, stream=message.stream,
            type=bounce_type.type_name, type_code=bounce_type.code, email=found.recipient, sender=message.from_email,
            subject=message.subject, tag=message.tag,
            description=_clean(report.description) or bounce_type.display_name,
            details=details[:1000], bounced_at=now, inactive=bounce_type.deactivates,
            can_activate=bounce_type is BounceType.HARD_BOUNCE, dump=_clean(data[:MAX_DUMP].decode("utf-8", "replace")))
        # The message's history shows failures; an auto-reply or a delay notice is only a bounce record.
        message_event = None
        if bounce_type is BounceType.TRANSIENT:
            message_event = (EventType.TRANSIENT.value, f"{bounce_type.display_name}: {details}")
        elif bounce_type is not BounceType.AUTO_RESPONDER:
            message_event = (EventType.BOUNCED.value, f"{bounce_type.display_name}: {details}")
        return (bounce, message_event, [notifications.bounce_event(bounce, message.metadata)],
                notifications.suppression_for(bounce, message.tag, message.metadata))


def _attribute(report: BounceReport, recipient: str) -> BouncedRecipient:
    """The report's entry for the recipient the token names (or its first entry), as that recipient's."""
    entries = [r for r in report.recipients if r.recipient.lower() == recipient.lower()] or list(report.recipients)
    if entries:
        e = entries[0]
        return BouncedRecipient(recipient, e.action, e.status, e.diagnostic, e.remote_mta, e.bounce_type)
    bounce_type = {ReportKind.FEEDBACK: BounceType.SPAM_COMPLAINT,
                   ReportKind.AUTO_REPLY: BounceType.AUTO_RESPONDER}.get(report.kind, BounceType.UNKNOWN)
    return BouncedRecipient(recipient, None, None, report.description, None, bounce_type)


def _clean(text: str) -> str:
    """Text a parser decoded with the report's own charset may hold lone surrogates (utf-7,
    unicode_escape): they cannot be stored or sent as JSON, so they become U+FFFD."""
    return text.encode("utf-8", "replace").decode("utf-8")
