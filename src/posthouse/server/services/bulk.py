"""Bulk sending (docs/postmark-api.md §2.5): up to 50,000 recipients accepted in one call, expanded later.

`accept` checks the request as a whole (any invalid field refuses it all, as Postmark does), stores it
and answers at once. `expand` (run by the bulk worker) turns it into messages a chunk at a time through
`SendingService.send_batch`, the one entry point for mail; each chunk's progress commits with its
messages, guarded so that a chunk is never expanded twice. A message that cannot be rendered or is
invalid counts as failed; the others go out.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from posthouse import wire
from posthouse.server.domain.addresses import AddressError, parse_address
from posthouse.server.domain.ids import new_message_id
from posthouse.server.domain.messages import parse_send_at
from posthouse.server.domain.templates import TemplateRenderError, TemplateSyntaxError, compile_cached
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.accounts import AccountService, Server
from posthouse.server.services.clock import Clock, iso
from posthouse.server.services.sending import SendingService
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.store.base import Stmt, Store
from posthouse.server.store.bulk import BulkRecord, chunk_stmts
from posthouse.server.store.idempotency import IdempotencyKey, finish_stmt

log = logging.getLogger("posthouse.bulk")
MAX_MESSAGES = 50_000
CHUNK = 500
MAX_PART = 5 * 1024 * 1024


class TemplateRenderer(Protocol):
    """What bulk needs of the template service: a template send rendered into a plain send request."""

    async def render_request(self, server: Server, request: wire.TemplateEmailRequest,
                             cache: dict[Any, Any]) -> wire.EmailRequest: ...


def _merge_headers(shared: list[wire.Header] | None, own: list[wire.Header] | None) -> list[wire.Header] | None:
    if not own:
        return shared
    names = {(h.name or "").lower() for h in own}
    return [*(h for h in shared or () if (h.name or "").lower() not in names), *own]


class BulkService:
    def __init__(self, store: Store, sending: SendingService, accounts: AccountService, clock: Clock,
                 wakeup: Wakeup, templates: TemplateRenderer | None = None) -> None:
        self.store = store
        self.sending = sending
        self.accounts = accounts
        self.clock = clock
        self.wakeup = wakeup
        self.templates = templates

    # -- the API --------------------------------------------------------------------------------

    async def accept(self, server: Server, request: wire.BulkRequest, body: bytes, *,
                     idempotency: IdempotencyKey | None = None) -> wire.BulkAccepted:
        """Check, store and answer; with an idempotency key held, its answer commits with the request."""
        stream = (request.message_stream or "").strip() or "broadcast"
        await self.accounts.sending_stream(server.id, stream)
        self._check(request)
        if request.template_id is not None or request.template_alias:
            # The template must exist and render for the first recipient, or nothing is accepted.
            await self._render(server, request, (request.messages or [])[0], {})
        now = self.clock.micros()
        record = BulkRecord(
            id=new_message_id(), server_id=server.id, status="Accepted", total=len(request.messages or ()),
            position=0, released_count=0, failed_count=0, subject=request.subject, request=body.decode(),
            submitted_at=now, updated_at=now)
        answer = wire.BulkAccepted(id=record.id, id_upper=record.id, status="Accepted", submitted_at=iso(now) or "")
        extra = finish_stmt(idempotency, 200, wire.encoder.encode(answer)) if idempotency is not None else []
        await self.store.insert_bulk(record, extra)
        self.wakeup.notify()
        return answer

    @staticmethod
    def _check(request: wire.BulkRequest) -> None:
        """The whole request, before anything is stored: one problem refuses it all (§2.5)."""
        if not (request.sender or "").strip():
            raise ApiError(300, "The 'From' field is required.")
        try:
            parse_address(request.sender or "")
        except AddressError:
            raise ApiError(300, f"Invalid 'From' address: '{request.sender}'.") from None
        messages = request.messages or []
        if not messages:
            raise ApiError(300, "The 'Messages' field is required: at least one message.")
        if len(messages) > MAX_MESSAGES:
            raise ApiError(300, f"A bulk request may have at most {MAX_MESSAGES:,} messages, not {len(messages):,}.")
        for index, message in enumerate(messages):
            if not (message.to or "").strip():
                raise ApiError(300, f"Message {index}: the 'To' field is required.")
        uses_template = request.template_id is not None or bool(request.template_alias)
        if uses_template and (request.subject or request.html_body or request.text_body):
            raise ApiError(1123, "'Subject', 'HtmlBody' and 'TextBody' come from the template: leave them out.")
        if not uses_template:
            if not request.html_body and not request.text_body:
                raise ApiError(300, "Provide either 'TextBody' or 'HtmlBody' (or a template).")
            for label, part in (("Subject", request.subject), ("HtmlBody", request.html_body),
                                ("TextBody", request.text_body)):
                if part is None:
                    continue
                if len(part) > MAX_PART:
                    raise ApiError(300, f"The '{label}' is too long.")
                try:
                    compile_cached(part)
                except TemplateSyntaxError as exc:
                    first = exc.errors[0]
                    raise ApiError(1123, f"'{label}' is not a valid template: {first.message} "
                                         f"(line {first.line}, character {first.character}).") from None
        parse_send_at(request.send_at)

    async def get(self, server: Server, bulk_id: str) -> wire.BulkStatus:
        record = await self.store.get_bulk(server.id, bulk_id.strip().lower())
        if record is None:
            raise NotFoundError(12, f"The bulk request '{bulk_id}' was not found.", 404)
        return _status(record)

    async def list(self, server: Server, count: int, pagination_key: str | None) -> wire.BulkList:
        after = _decode_key(pagination_key) if pagination_key else None
        records = await self.store.list_bulk(server.id, count + 1, after)
        page, more = records[:count], len(records) > count
        key = _encode_key(page[-1]) if more and page else None
        return wire.BulkList(requests=[_status(r) for r in page], pagination_key=key)

    # -- the worker's side ---------------------------------------------------------------------

    async def expand(self, record: BulkRecord, keep_lease: Any = None) -> None:
        """Expand a leased bulk request from where it stopped, a chunk at a time."""
        server = await self.accounts.server_by_id(record.server_id)
        request = msgspec.json.decode(record.request, type=wire.BulkRequest)
        messages = request.messages or []
        position = record.position
        while position < len(messages):
            chunk = messages[position:position + CHUNK]
            if server is None:  # deleted meanwhile: nothing is sent, every message fails
                await self.store.record_bulk_chunk(record.id, position, len(chunk), len(chunk), self.clock.micros())
                position += len(chunk)
                continue
            rendered: list[wire.EmailRequest | None] = []
            cache: dict[Any, Any] = {}
            for message in chunk:
                try:
                    rendered.append(await self._render(server, request, message, cache))
                except ApiError as exc:
                    log.info("bulk %s: a message to %s failed: %s", record.id, message.to, exc.message)
                    rendered.append(None)
            failed_to_render = sum(1 for r in rendered if r is None)
            start = position

            def progress(results: list[wire.SendResponse], start: int = start, size: int = len(chunk),
                         unrendered: int = failed_to_render) -> Sequence[Stmt]:
                failed = unrendered + sum(1 for r in results if r.error_code != 0)
                return chunk_stmts(record.id, start, size, size - failed, failed, self.clock.micros())

            requests = [r for r in rendered if r is not None]
            if requests:
                await self.sending.send_batch(server, requests, commit_with=progress, metered=False)
            else:
                await self.store.transact(list(progress([])))
            position += len(chunk)
            if keep_lease is not None:
                await keep_lease()

    async def _render(self, server: Server, request: wire.BulkRequest, message: wire.BulkMessage,
                      cache: dict[Any, Any]) -> wire.EmailRequest:
        metadata = {**(request.metadata or {}), **(message.metadata or {})} or None
        headers = _merge_headers(request.headers, message.headers)
        model = message.template_model or {}
        if request.template_id is not None or request.template_alias:
            if self.templates is None:
                raise ApiError(1101, "Templates are not available here.")
            email = await self.templates.render_request(server, wire.TemplateEmailRequest(
                template_id=request.template_id, template_alias=request.template_alias, template_model=model,
                inline_css=request.inline_css, sender=request.sender, to=message.to, cc=message.cc,
                bcc=message.bcc, reply_to=request.reply_to, tag=request.tag, headers=headers,
                track_opens=request.track_opens, track_links=request.track_links, metadata=metadata,
                attachments=request.attachments, message_stream=request.message_stream or "broadcast"), cache)
            email.send_at = request.send_at
            return email
        try:
            subject = compile_cached(request.subject).render(model, escape_html=False) if request.subject else None
            html = compile_cached(request.html_body).render(model) if request.html_body else None
            text = compile_cached(request.text_body).render(model, escape_html=False) if request.text_body else None
        except (TemplateRenderError, TemplateSyntaxError) as exc:
            raise ApiError(1122, f"The message could not be rendered: {exc}") from None
        return wire.EmailRequest(
            sender=request.sender, to=message.to, cc=message.cc, bcc=message.bcc, subject=subject, tag=request.tag,
            html_body=html, text_body=text, reply_to=request.reply_to, headers=headers,
            track_opens=request.track_opens, track_links=request.track_links, metadata=metadata,
            attachments=request.attachments, message_stream=request.message_stream or "broadcast",
            send_at=request.send_at)


def _status(record: BulkRecord) -> wire.BulkStatus:
    done = record.released_count + record.failed_count
    percentage = 100.0 if record.total == 0 else round(100.0 * done / record.total, 2)
    return wire.BulkStatus(
        id=record.id, submitted_at=iso(record.submitted_at) or "", status=record.status,
        total_messages=record.total, percentage_completed=percentage, released_count=record.released_count,
        failed_count=record.failed_count, subject=record.subject)


def _encode_key(record: BulkRecord) -> str:
    return base64.urlsafe_b64encode(f"{record.submitted_at}:{record.id}".encode()).decode().rstrip("=")


def _decode_key(key: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()
        at, _, bulk_id = text.partition(":")
        moment = int(at)
        if not 0 <= moment < 2**63:
            raise ValueError(at)
        return moment, bulk_id
    except (ValueError, UnicodeDecodeError):
        raise ApiError(13, f"Invalid 'PaginationKey': '{key}'.") from None
