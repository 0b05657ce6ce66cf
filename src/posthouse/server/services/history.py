"""Message history: searching sent mail, its details and events, and its raw source (docs/postmark-api.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from posthouse import wire
from posthouse.server.domain.links import untrack_message
from posthouse.server.domain.statuses import POSTMARK_EVENT_TYPES, MessageStatus
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.clock import Clock, iso
from posthouse.server.store.base import MessageFilter, MessageRecord, Store

MAX_COUNT = 500
MAX_WINDOW = 10_000
_STATUSES = {"queued": "Queued", "sent": "Sent", "processed": "Sent", "scheduled": "Scheduled",
             "cancelled": "Cancelled"}


def check_paging(count: int | None, offset: int | None, error_code: int) -> tuple[int, int]:
    """Postmark's paging rules: both required, count ≤ 500, count + offset ≤ 10,000."""
    if count is None:
        raise ApiError(error_code, "The 'count' query parameter is required.")
    if offset is None:
        raise ApiError(error_code, "The 'offset' query parameter is required.")
    if not 1 <= count <= MAX_COUNT:
        raise ApiError(error_code, f"The 'count' parameter must be between 1 and {MAX_COUNT}.")
    if offset < 0 or count + offset > MAX_WINDOW:
        raise ApiError(error_code,
                       f"The 'offset' parameter must be at least 0 and count + offset at most {MAX_WINDOW}.")
    return count, offset


def parse_time_filter(value: str | None, *, end: bool, error_code: int) -> int | None:
    """`YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS` (UTC) → µs; a bare date as an end bound means its last moment."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(error_code, f"Invalid date: '{value}'. Use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and len(value) <= 10:
        moment += timedelta(days=1) - timedelta(microseconds=1)
    return int(moment.timestamp() * 1_000_000)


def parse_status(value: str | None) -> str | None:
    if not value:
        return None
    status = _STATUSES.get(value.lower())
    if status is None:
        raise ApiError(700, f"Invalid status: '{value}'. Use queued, sent, processed, scheduled or cancelled.")
    return status


def _addresses(items: list[dict[str, str | None]]) -> list[wire.EmailAddress]:
    return [wire.EmailAddress(email=i["Email"] or "", name=i.get("Name")) for i in items]


def shown_status(record: MessageRecord, now: int) -> str:
    """Queued with a SendAt still ahead shows as Scheduled: it is released by time alone, no job runs."""
    if record.status == MessageStatus.QUEUED and record.send_at is not None and record.send_at > now:
        return MessageStatus.SCHEDULED.value
    if record.status == MessageStatus.CANCELLED:
        # Postmark's clients know no "Cancelled" (postmark-python refuses the page): a message that
        # will never go out is "Failed" there; the cancel answer and `status=cancelled` say Cancelled.
        return "Failed"
    return record.status


def message_summary(record: MessageRecord, now: int) -> wire.OutboundMessage:
    return wire.OutboundMessage(
        tag=record.tag, message_id=record.message_id, message_stream=record.stream, to=_addresses(record.to),
        cc=_addresses(record.cc), bcc=_addresses(record.bcc), recipients=record.recipients,
        received_at=iso(record.received_at) or "", sender=record.sender, subject=record.subject,
        attachments=record.attachments, status=shown_status(record, now), track_opens=record.track_opens,
        track_links=record.track_links, metadata=record.metadata, sandboxed=record.sandboxed,
    )


def _bodies(content: bytes) -> tuple[str | None, str | None]:
    """The text and HTML bodies of stored MIME, read with the stdlib parser (not on a hot path)."""
    message = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(message, EmailMessage)
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    # Stored MIME has CRLF line endings (RFC 5322); the API gives bodies back with "\n", as sent in JSON.
    text = text_part.get_content().replace("\r\n", "\n") if text_part is not None else None
    html = html_part.get_content().replace("\r\n", "\n") if html_part is not None else None
    return text, html


class HistoryService:
    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()

    async def search(self, server_id: int, filters: MessageFilter, count: int, offset: int
                     ) -> wire.OutboundMessageList:
        now = self.clock.micros()
        filters.now = now
        total, records = await self.store.search_messages(server_id, filters, offset, count)
        return wire.OutboundMessageList(total_count=total, messages=[message_summary(r, now) for r in records])

    async def _record(self, server_id: int, message_id: str) -> MessageRecord:
        record = await self.store.get_message(server_id, message_id.lower(), with_content=True)
        if record is None:
            raise NotFoundError(701, f"The message '{message_id}' was not found.")
        return record

    async def _as_written(self, record: MessageRecord) -> bytes:
        """The message's content as the sender wrote it: a tracked message's stored content has the pixel and
        rewritten links (with placeholders), which details and dump do not show, as Postmark keeps the pixel
        out of the raw source so that viewing it is not an open (domain/links.py)."""
        content = record.content or b""
        if (record.track_opens or record.track_links != "None") and b"phtrk" in content:
            links = await self.store.list_message_links(record.message_id)
            content = untrack_message(content, {link: text if text is not None else url
                                                for link, url, _, text in links})
        return content

    async def details(self, server_id: int, message_id: str) -> wire.OutboundMessageDetails:
        record = await self._record(server_id, message_id)
        stored_events = await self.store.list_events(record.message_id)
        # The status and the events are two reads: a delivery recorded between them would show a message
        # still Queued with all its Delivered events. When the status moved meanwhile, read both again.
        for _ in range(3):
            again = await self.store.get_message(server_id, record.message_id)
            if again is None or again.status == record.status:
                break
            record.status = again.status
            stored_events = await self.store.list_events(record.message_id)
        events = []
        for event in stored_events:
            if event.type not in POSTMARK_EVENT_TYPES:
                continue
            details = dict(event.details)
            if event.bounce_id is not None:
                details["BounceID"] = str(event.bounce_id)
            events.append(wire.MessageEvent(recipient=event.recipient, type=event.type,
                                            received_at=iso(event.occurred_at) or "", details=details))
        summary = message_summary(record, self.clock.micros())
        content = await self._as_written(record)
        text, html = _bodies(content)
        return wire.OutboundMessageDetails(
            **{f: getattr(summary, f) for f in summary.__struct_fields__},
            text_body=text, html_body=html, body=content.decode("utf-8", "replace"),
            message_events=events)

    async def dump(self, server_id: int, message_id: str) -> wire.Dump:
        record = await self._record(server_id, message_id)
        return wire.Dump(body=(await self._as_written(record)).decode("utf-8", "replace"))
