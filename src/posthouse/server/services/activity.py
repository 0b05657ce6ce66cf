"""What the dashboard shows of sent mail (issue 15): the activity list and sandbox inbox a page at a time,
and one message whole — its timeline (queued, each attempt with the receiver's SMTP reply, delivered or
bounced, opens, clicks, webhook posts), its HTML, text, headers and raw source.

The list uses the API's search (`GET /messages/outbound`, docs/postmark-api.md §4.3) with the same filters,
but reads one row past the page instead of counting every match: a count at a million messages costs more
than the page's whole budget (< 100 ms), and a list needs only to know whether there is a next page.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from posthouse import wire
from posthouse.server.domain.statuses import DeliveryState, EventType
from posthouse.server.errors import NotFoundError
from posthouse.server.services.clock import Clock, from_micros
from posthouse.server.services.history import (
    MAX_WINDOW,
    HistoryService,
    message_summary,
    parse_status,
    parse_time_filter,
)
from posthouse.server.services.stats import StatsService
from posthouse.server.store.base import MessageFilter, Store

PAGE_SIZE = 50
ENGAGEMENT_SHOWN = 50  # opens and clicks listed on a message page (the newest)
_CID = re.compile(r"""cid:([^"'\s)>]+)""", re.IGNORECASE)
_MAX_INLINE_IMAGES = 10 * 1024 * 1024  # bytes of cid: images written into the HTML as data: URLs at most
STATUS_CHOICES = ("queued", "sent", "scheduled", "cancelled")  # the API's `status` values, as the form offers them


@dataclass(slots=True)
class ActivityFilter:
    """The list's filters as the form sends them (Postmark's: status, recipient, tag, date range, subject)."""

    stream: str = "outbound"
    status: str | None = None
    recipient: str | None = None
    tag: str | None = None
    subject: str | None = None
    from_date: str | None = None  # YYYY-MM-DD (UTC) or a date and time
    to_date: str | None = None


@dataclass(slots=True)
class ActivityPage:
    messages: list[wire.OutboundMessage]
    offset: int
    count: int
    has_more: bool

    @property
    def older_offset(self) -> int | None:
        return self.offset + self.count if self.has_more else None

    @property
    def newer_offset(self) -> int | None:
        return max(0, self.offset - self.count) if self.offset else None


@dataclass(slots=True)
class RecipientState:
    recipient: str
    state: str  # DeliveryState
    attempts: int
    next_attempt_at: int | None  # µs, while a retry is pending
    last_reply: str | None


@dataclass(slots=True)
class TimelineEntry:
    at: int  # µs
    kind: str  # queued, scheduled, delivered, transient, bounced, opened, clicked, subscription, webhook
    title: str
    recipient: str | None = None
    detail: str | None = None  # an SMTP reply, a summary, a webhook's URL
    lines: list[str] = field(default_factory=list)  # a webhook post's attempts


@dataclass(slots=True)
class MessageView:
    summary: wire.OutboundMessageDetails
    received_at: int
    recipients: list[RecipientState]
    timeline: list[TimelineEntry]
    opens: wire.OpenList
    clicks: wire.ClickList
    headers: list[tuple[str, str]]

    @property
    def text(self) -> str | None:
        return self.summary.text_body

    @property
    def html(self) -> str | None:
        return self.summary.html_body

    @property
    def raw(self) -> str:
        return self.summary.body or ""


_EVENT_KINDS: dict[str, tuple[str, str]] = {
    EventType.DELIVERED: ("delivered", "Delivered"),
    EventType.TRANSIENT: ("transient", "Attempt deferred (the receiver answered with a temporary failure)"),
    EventType.BOUNCED: ("bounced", "Bounced"),
    EventType.OPENED: ("opened", "Opened"),
    EventType.LINK_CLICKED: ("clicked", "Link clicked"),
    EventType.SUBSCRIPTION_CHANGED: ("subscription", "Subscription changed"),
}


class ActivityService:
    def __init__(self, store: Store, history: HistoryService, stats: StatsService, clock: Clock | None = None) -> None:
        self.store = store
        self.history = history
        self.stats = stats
        self.clock = clock or Clock()

    async def page(self, server_id: int, f: ActivityFilter, offset: int = 0, count: int = PAGE_SIZE) -> ActivityPage:
        """A page of the server's messages in a stream, newest first. Raises ApiError for a filter the API
        would refuse (an unknown status, a date that is no date); offsets stop at the API's window."""
        filters = MessageFilter(
            stream=f.stream, recipient=f.recipient, tag=f.tag, status=parse_status(f.status), subject=f.subject,
            from_time=parse_time_filter(f.from_date, end=False, error_code=700),
            to_time=parse_time_filter(f.to_date, end=True, error_code=700))
        return await self._page(server_id, filters, offset, count)

    async def inbox(self, server_id: int, stream: str, *, recipient: str | None = None, subject: str | None = None,
                    offset: int = 0, count: int = PAGE_SIZE) -> ActivityPage:
        """The sandbox's captured mail of a stream, newest first (what a Mailpit-like inbox lists)."""
        filters = MessageFilter(stream=stream, recipient=recipient, subject=subject, sandboxed=True)
        return await self._page(server_id, filters, offset, count)

    async def _page(self, server_id: int, filters: MessageFilter, offset: int, count: int) -> ActivityPage:
        offset = max(0, min(offset, MAX_WINDOW - count))
        now = self.clock.micros()
        filters.now = now
        records = await self.store.page_messages(server_id, filters, offset, count + 1)
        return ActivityPage([message_summary(r, now) for r in records[:count]], offset, count,
                            len(records) > count and offset + count < MAX_WINDOW)

    async def message(self, server_id: int, message_id: str) -> MessageView:
        """Everything the message page shows; NotFoundError (701) for a message the server did not send."""
        wanted = message_id.strip().lower()
        details = await self.history.details(server_id, wanted)  # the status, bodies and raw source as written
        record = await self.store.get_message(server_id, wanted)
        if record is None:
            raise NotFoundError(701, f"The message '{message_id}' was not found.")
        events = await self.store.list_events(wanted)
        deliveries = await self.store.list_deliveries(wanted)
        posts = await self.store.list_message_posts(server_id, wanted)
        opens = await self.stats.message_opens(server_id, wanted, ENGAGEMENT_SHOWN, 0)
        clicks = await self.stats.message_clicks(server_id, wanted, ENGAGEMENT_SHOWN, 0)

        timeline: list[TimelineEntry] = []
        queued = [e for e in events if e.type == EventType.QUEUED]
        timeline.append(TimelineEntry(
            record.received_at, "queued", "Accepted and queued",
            detail=f"for {', '.join(e.recipient for e in queued) or ', '.join(record.recipients)}"))
        if record.send_at is not None:
            timeline.append(TimelineEntry(record.received_at, "scheduled", "Scheduled",
                                          detail=f"to be released at {_stamp(record.send_at)}"))
        for event in events:
            if event.type == EventType.QUEUED:
                continue
            kind, title = _EVENT_KINDS.get(event.type, ("event", event.type))  # EventType is a StrEnum
            timeline.append(TimelineEntry(event.occurred_at, kind, title, recipient=event.recipient,
                                          detail=_event_detail(event.details)))
        for post in posts:
            lines = [f"{_stamp(a.attempted_at)}: {a.outcome}"
                     + (f", HTTP {a.status_code}" if a.status_code is not None else "")
                     + (f", {a.error}" if a.error else "") for a in post.history]
            timeline.append(TimelineEntry(
                post.created_at, "webhook", f"{post.record_type} webhook post: {post.state}",
                detail=post.url or f"webhook {post.webhook_id} (deleted)", lines=lines))
        timeline.sort(key=lambda e: e.at)
        recipients = [RecipientState(d.recipient, d.state, d.attempts,
                                     d.next_attempt_at if d.state == DeliveryState.DEFERRED else None, d.last_reply)
                      for d in deliveries]
        return MessageView(details, record.received_at, recipients, timeline, opens, clicks,
                           _headers(details.body or ""))

    async def raw(self, server_id: int, message_id: str) -> str:
        """The raw source as the sender wrote it (the API's dump, docs/postmark-api.md §4.4)."""
        return (await self.history.dump(server_id, message_id.strip().lower())).body

    async def html(self, server_id: int, message_id: str) -> str | None:
        """The message's HTML body as written, its `cid:` images (parts of the message) inlined as `data:`
        URLs, so that the sandboxed frame shows them without loading anything."""
        details = await self.history.details(server_id, message_id.strip().lower())
        if details.html_body is None:
            return None
        return _inline_cid_images(details.html_body, details.body or "")


def _stamp(micros: int) -> str:
    return from_micros(micros).strftime("%Y-%m-%d %H:%M:%S UTC")


def _event_detail(details: dict[str, Any]) -> str | None:
    """The line worth showing of an event's details: the receiver's reply for an attempt, else its summary."""
    if details.get("DeliveryMessage"):
        where = details.get("DestinationServer")
        return str(details["DeliveryMessage"]) + (f" (from {where})" if where else "")
    if details.get("Summary"):
        return str(details["Summary"])
    if "SuppressSending" in details:
        return f"suppress sending: {details['SuppressSending']} ({details.get('Origin', '')})"
    return None


def _headers(raw: str) -> list[tuple[str, str]]:
    """The top-level header fields, unfolded, in order (RFC 5322 §2.2.3)."""
    head = raw.replace("\r\n", "\n").split("\n\n", 1)[0]
    fields: list[tuple[str, str]] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))
    return fields


def _inline_cid_images(html: str, raw: str) -> str:
    if "cid:" not in html.lower():
        return html
    message = BytesParser(policy=policy.default).parsebytes(raw.encode("utf-8", "surrogateescape"))
    assert isinstance(message, EmailMessage)
    images: dict[str, str] = {}
    budget = _MAX_INLINE_IMAGES
    for part in message.walk():
        content_id = part.get("Content-ID")
        if not content_id or part.is_multipart() or part.get_content_maintype() != "image":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or len(payload) > budget:
            continue
        budget -= len(payload)
        encoded = base64.b64encode(payload).decode("ascii")
        images[str(content_id).strip().strip("<>").lower()] = f"data:{part.get_content_type()};base64,{encoded}"
    return _CID.sub(lambda m: images.get(m.group(1).lower(), m.group(0)), html)


def checked_offset(value: str | None) -> int:
    """A page offset from a query string: a whole number within the API's window, else 0."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 6:
        return 0
    return min(int(value), MAX_WINDOW)

