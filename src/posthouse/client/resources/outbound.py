"""Outbound mail: send one or a batch, with or without templates, search, details and raw source, opens and
clicks (docs/postmark-api.md §2.1-§2.4, §4), and cancel or reschedule a scheduled message (Posthouse extensions).

Sends are replayable: each carries one `Idempotency-Key` (a uuid4 unless the caller gives one) on every
attempt, so a retry after a lost answer cannot send the message twice.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import TypedDict, Unpack, cast

from posthouse import wire
from posthouse.client.protocol import Call, format_instant, json_decoder, path_segment, scheduled
from posthouse.client.resources.base import MAX_PAGE_SIZE, AsyncResource, SyncResource, pages, pages_async

__all__ = [
    "AsyncOutbound",
    "EngagementSearch",
    "OutboundSearch",
    "SyncOutbound",
    "batch_call",
    "batch_with_templates_call",
    "cancel_call",
    "clicks_call",
    "details_call",
    "dump_call",
    "list_call",
    "message_clicks_call",
    "message_opens_call",
    "opens_call",
    "reschedule_call",
    "send_call",
    "with_template_call",
]

_SEND = json_decoder(wire.SendResponse)
_BATCH = json_decoder(list[wire.SendResponse])
_LIST = json_decoder(wire.OutboundMessageList)
_DETAILS = json_decoder(wire.OutboundMessageDetails)
_DUMP = json_decoder(wire.Dump)
_CHANGE = json_decoder(wire.ScheduleChange)
_OPENS = json_decoder(wire.OpenList)
_CLICKS = json_decoder(wire.ClickList)


class OutboundSearch(TypedDict, total=False):
    """The filters of `outbound.list` (docs/postmark-api.md §4.2), all optional."""

    count: int  # page size, at most 500; 100 when not given
    offset: int  # count + offset at most 10 000; 0 when not given
    recipient: str
    from_email: str
    tag: str
    status: str  # queued, sent or processed
    subject: str
    from_date: datetime | date | str  # inclusive; a naive time is UTC
    to_date: datetime | date | str
    message_stream: str  # `outbound` when not given
    metadata: Mapping[str, str]  # one key and value


class EngagementSearch(TypedDict, total=False):
    """The filters of `outbound.opens` and `outbound.clicks` (docs/postmark-api.md §4.5), all optional."""

    count: int  # page size, at most 500; 100 when not given
    offset: int  # count + offset at most 10 000; 0 when not given
    recipient: str  # a To, Cc or Bcc address
    tag: str
    client_name: str  # Gmail, Apple Mail, …
    client_company: str
    client_family: str
    os_name: str
    os_family: str
    os_company: str
    platform: str  # Desktop, Mobile, WebMail or Unknown
    country: str
    region: str
    city: str
    message_stream: str  # `outbound` when not given
    from_date: datetime | date | str  # inclusive; a naive time is UTC
    to_date: datetime | date | str


def _engagement_params(search: EngagementSearch) -> dict[str, str]:
    params = {"count": str(search.get("count", 100)), "offset": str(search.get("offset", 0))}
    names = ("recipient", "tag", "client_name", "client_company", "client_family", "os_name", "os_family",
             "os_company", "platform", "country", "region", "city")
    params.update({name: str(value) for name in names if (value := search.get(name)) is not None})
    stream = search.get("message_stream")
    if stream is not None:
        params["messagestream"] = stream
    for name, moment in (("fromdate", search.get("from_date")), ("todate", search.get("to_date"))):
        if moment is not None:
            params[name] = format_instant(moment)
    return params


def opens_call(**search: Unpack[EngagementSearch]) -> Call[wire.OpenList]:
    return Call("GET", "/messages/outbound/opens", _OPENS, params=_engagement_params(search))


def clicks_call(**search: Unpack[EngagementSearch]) -> Call[wire.ClickList]:
    return Call("GET", "/messages/outbound/clicks", _CLICKS, params=_engagement_params(search))


def message_opens_call(message_id: str, *, count: int = 100, offset: int = 0) -> Call[wire.OpenList]:
    return Call("GET", f"/messages/outbound/opens/{path_segment(message_id)}", _OPENS,
                params={"count": str(count), "offset": str(offset)})


def message_clicks_call(message_id: str, *, count: int = 100, offset: int = 0) -> Call[wire.ClickList]:
    return Call("GET", f"/messages/outbound/clicks/{path_segment(message_id)}", _CLICKS,
                params={"count": str(count), "offset": str(offset)})


def send_call(
    email: wire.EmailRequest, *, send_at: datetime | str | None = None, idempotency_key: str | None = None
) -> Call[wire.SendResponse]:
    return Call(
        "POST",
        "/email",
        _SEND,
        body=wire.encoder.encode(scheduled(email, send_at)),
        idempotency_key=idempotency_key or str(uuid.uuid4()),
    )


def batch_call(
    emails: Sequence[wire.EmailRequest], *, send_at: datetime | str | None = None, idempotency_key: str | None = None
) -> Call[list[wire.SendResponse]]:
    body = wire.encoder.encode([scheduled(email, send_at) for email in emails])
    return Call("POST", "/email/batch", _BATCH, body=body, idempotency_key=idempotency_key or str(uuid.uuid4()))


def with_template_call(
    email: wire.TemplateEmailRequest, *, send_at: datetime | str | None = None, idempotency_key: str | None = None
) -> Call[wire.SendResponse]:
    return Call(
        "POST",
        "/email/withTemplate",
        _SEND,
        body=wire.encoder.encode(scheduled(email, send_at)),
        idempotency_key=idempotency_key or str(uuid.uuid4()),
    )


def batch_with_templates_call(
    emails: Sequence[wire.TemplateEmailRequest],
    *,
    send_at: datetime | str | None = None,
    idempotency_key: str | None = None,
) -> Call[list[wire.SendResponse]]:
    batch = wire.TemplateBatchRequest(messages=[scheduled(email, send_at) for email in emails])
    return Call(
        "POST",
        "/email/batchWithTemplates",
        _BATCH,
        body=wire.encoder.encode(batch),
        idempotency_key=idempotency_key or str(uuid.uuid4()),
    )


def list_call(**search: Unpack[OutboundSearch]) -> Call[wire.OutboundMessageList]:
    params = {"count": str(search.get("count", 100)), "offset": str(search.get("offset", 0))}
    texts = {
        "recipient": search.get("recipient"),
        "fromemail": search.get("from_email"),
        "tag": search.get("tag"),
        "status": search.get("status"),
        "subject": search.get("subject"),
        "messagestream": search.get("message_stream"),
    }
    params.update({name: value for name, value in texts.items() if value is not None})
    for name, moment in (("fromdate", search.get("from_date")), ("todate", search.get("to_date"))):
        if moment is not None:
            params[name] = format_instant(moment)
    for key, value in (search.get("metadata") or {}).items():
        params[f"metadata_{key}"] = value
    return Call("GET", "/messages/outbound", _LIST, params=params)


def details_call(message_id: str) -> Call[wire.OutboundMessageDetails]:
    return Call("GET", f"/messages/outbound/{path_segment(message_id)}/details", _DETAILS)


def dump_call(message_id: str) -> Call[str]:
    return Call("GET", f"/messages/outbound/{path_segment(message_id)}/dump", lambda content: _DUMP(content).body)


def cancel_call(message_id: str) -> Call[wire.ScheduleChange]:
    # A retry after a lost answer would be told the message is already cancelled (1602): not replayable.
    return Call("PUT", f"/messages/outbound/{path_segment(message_id)}/cancel", _CHANGE, replayable=False)


def reschedule_call(message_id: str, send_at: datetime | str) -> Call[wire.ScheduleChange]:
    # Moving a message to the same time twice leaves the same state: replayable.
    body = wire.encoder.encode(scheduled(wire.ScheduleRequest(), send_at))
    return Call("PUT", f"/messages/outbound/{path_segment(message_id)}/schedule", _CHANGE, body=body)


class AsyncOutbound(AsyncResource):
    """`client.outbound` of the async clients."""

    async def send(
        self, email: wire.EmailRequest, *, send_at: datetime | str | None = None, idempotency_key: str | None = None
    ) -> wire.SendResponse:
        """Send one message; raises when it is refused. `send_at` (an aware datetime or ISO 8601) schedules it."""
        return await self._http.run(send_call(email, send_at=send_at, idempotency_key=idempotency_key))

    async def send_batch(
        self,
        emails: Sequence[wire.EmailRequest],
        *,
        send_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[wire.SendResponse]:
        """Send up to 500 messages in one request; one result per message, in order, with its own
        `error_code` (0 when accepted): a refused message does not raise, a failed request does."""
        return await self._http.run(batch_call(emails, send_at=send_at, idempotency_key=idempotency_key))

    async def send_with_template(
        self,
        email: wire.TemplateEmailRequest,
        *,
        send_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> wire.SendResponse:
        """Send one message rendered from a stored template (`template_id` or `template_alias`, with
        `template_model`); raises when it is refused, as `send` does."""
        return await self._http.run(with_template_call(email, send_at=send_at, idempotency_key=idempotency_key))

    async def send_batch_with_templates(
        self,
        emails: Sequence[wire.TemplateEmailRequest],
        *,
        send_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[wire.SendResponse]:
        """Up to 500 template messages in one request; one result per message, in order, as `send_batch`:
        a message that is refused or cannot be rendered does not raise, a failed request does."""
        return await self._http.run(batch_with_templates_call(emails, send_at=send_at, idempotency_key=idempotency_key))

    async def list(self, **search: Unpack[OutboundSearch]) -> wire.OutboundMessageList:
        """One page of sent messages, newest first, with the total that match."""
        return await self._http.run(list_call(**search))

    async def iterate(self, *, page_size: int = MAX_PAGE_SIZE, **search: Unpack[OutboundSearch]
                      ) -> AsyncIterator[wire.OutboundMessage]:
        """Every message matching `search` (its `count` is ignored), newest first, `page_size` a request.
        Stops at the search window (10,000 from the first): narrow `from_date`/`to_date` to reach further."""
        async def fetch(count: int, offset: int) -> tuple[int, builtins.list[wire.OutboundMessage]]:
            page = await self.list(**cast(OutboundSearch, {**search, "count": count, "offset": offset}))
            return page.total_count, page.messages

        async for message in pages_async(fetch, lambda m: m.message_id, offset=search.get("offset", 0),
                                         page_size=page_size):
            yield message

    async def get(self, message_id: str) -> wire.OutboundMessageDetails:
        """A message with its bodies and what happened to it (`message_events`)."""
        return await self._http.run(details_call(message_id))

    async def dump(self, message_id: str) -> str:
        """The message's raw MIME source ("" when it is not kept)."""
        return await self._http.run(dump_call(message_id))

    async def opens(self, **search: Unpack[EngagementSearch]) -> wire.OpenList:
        """One page of recorded opens, newest first, with the total that match."""
        return await self._http.run(opens_call(**search))

    async def clicks(self, **search: Unpack[EngagementSearch]) -> wire.ClickList:
        """One page of recorded clicks on tracked links, newest first, with the total that match."""
        return await self._http.run(clicks_call(**search))

    async def message_opens(self, message_id: str, *, count: int = 100, offset: int = 0) -> wire.OpenList:
        """One page of a message's opens (`first_open` marks each recipient's first), newest first."""
        return await self._http.run(message_opens_call(message_id, count=count, offset=offset))

    async def message_clicks(self, message_id: str, *, count: int = 100, offset: int = 0) -> wire.ClickList:
        """One page of the clicks on a message's tracked links, newest first."""
        return await self._http.run(message_clicks_call(message_id, count=count, offset=offset))

    async def cancel(self, message_id: str) -> wire.ScheduleChange:
        """Cancel a message not yet released for delivery; `released` names recipients it was too late for.
        Raises (ErrorCode 1601) when all of it was released, 1602 when it is already cancelled."""
        return await self._http.run(cancel_call(message_id))

    async def reschedule(self, message_id: str, send_at: datetime | str) -> wire.ScheduleChange:
        """Move a message not yet released to `send_at` (an aware datetime or ISO 8601); a past time releases it
        now. Raises (ErrorCode 1601) when it was already released or cancelled."""
        return await self._http.run(reschedule_call(message_id, send_at))


class SyncOutbound(SyncResource):
    """`client.outbound` of the sync clients."""

    def send(
        self, email: wire.EmailRequest, *, send_at: datetime | str | None = None, idempotency_key: str | None = None
    ) -> wire.SendResponse:
        """Send one message; raises when it is refused. `send_at` (an aware datetime or ISO 8601) schedules it."""
        return self._http.run(send_call(email, send_at=send_at, idempotency_key=idempotency_key))

    def send_batch(
        self,
        emails: Sequence[wire.EmailRequest],
        *,
        send_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[wire.SendResponse]:
        """Send up to 500 messages in one request; one result per message, in order, with its own
        `error_code` (0 when accepted): a refused message does not raise, a failed request does."""
        return self._http.run(batch_call(emails, send_at=send_at, idempotency_key=idempotency_key))

    def send_with_template(
        self,
        email: wire.TemplateEmailRequest,
        *,
        send_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> wire.SendResponse:
        """Send one message rendered from a stored template (`template_id` or `template_alias`, with
        `template_model`); raises when it is refused, as `send` does."""
        return self._http.run(with_template_call(email, send_at=send_at, idempotency_key=idempotency_key))

    def send_batch_with_templates(
        self,
        emails: Sequence[wire.TemplateEmailRequest],
        *,
        send_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[wire.SendResponse]:
        """Up to 500 template messages in one request; one result per message, in order, as `send_batch`:
        a message that is refused or cannot be rendered does not raise, a failed request does."""
        return self._http.run(batch_with_templates_call(emails, send_at=send_at, idempotency_key=idempotency_key))

    def list(self, **search: Unpack[OutboundSearch]) -> wire.OutboundMessageList:
        """One page of sent messages, newest first, with the total that match."""
        return self._http.run(list_call(**search))

    def iterate(self, *, page_size: int = MAX_PAGE_SIZE, **search: Unpack[OutboundSearch]
                ) -> Iterator[wire.OutboundMessage]:
        """Every message matching `search` (its `count` is ignored), newest first, `page_size` a request.
        Stops at the search window (10,000 from the first): narrow `from_date`/`to_date` to reach further."""
        def fetch(count: int, offset: int) -> tuple[int, builtins.list[wire.OutboundMessage]]:
            page = self.list(**cast(OutboundSearch, {**search, "count": count, "offset": offset}))
            return page.total_count, page.messages

        return pages(fetch, lambda m: m.message_id, offset=search.get("offset", 0), page_size=page_size)

    def get(self, message_id: str) -> wire.OutboundMessageDetails:
        """A message with its bodies and what happened to it (`message_events`)."""
        return self._http.run(details_call(message_id))

    def dump(self, message_id: str) -> str:
        """The message's raw MIME source ("" when it is not kept)."""
        return self._http.run(dump_call(message_id))

    def opens(self, **search: Unpack[EngagementSearch]) -> wire.OpenList:
        """One page of recorded opens, newest first, with the total that match."""
        return self._http.run(opens_call(**search))

    def clicks(self, **search: Unpack[EngagementSearch]) -> wire.ClickList:
        """One page of recorded clicks on tracked links, newest first, with the total that match."""
        return self._http.run(clicks_call(**search))

    def message_opens(self, message_id: str, *, count: int = 100, offset: int = 0) -> wire.OpenList:
        """One page of a message's opens (`first_open` marks each recipient's first), newest first."""
        return self._http.run(message_opens_call(message_id, count=count, offset=offset))

    def message_clicks(self, message_id: str, *, count: int = 100, offset: int = 0) -> wire.ClickList:
        """One page of the clicks on a message's tracked links, newest first."""
        return self._http.run(message_clicks_call(message_id, count=count, offset=offset))

    def cancel(self, message_id: str) -> wire.ScheduleChange:
        """Cancel a message not yet released for delivery; `released` names recipients it was too late for.
        Raises (ErrorCode 1601) when all of it was released, 1602 when it is already cancelled."""
        return self._http.run(cancel_call(message_id))

    def reschedule(self, message_id: str, send_at: datetime | str) -> wire.ScheduleChange:
        """Move a message not yet released to `send_at` (an aware datetime or ISO 8601); a past time releases it
        now. Raises (ErrorCode 1601) when it was already released or cancelled."""
        return self._http.run(reschedule_call(message_id, send_at))
