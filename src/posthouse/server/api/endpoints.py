"""The API's routes: Postmark's sending, messages, server, servers and message-stream endpoints."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.payloads import decode, json_response, read_body
from posthouse.server.api.routing import Query, Router, parse_id
from posthouse.server.errors import ApiError
from posthouse.server.services.accounts import Server
from posthouse.server.services.clock import from_micros, iso
from posthouse.server.services.history import check_paging, parse_status, parse_time_filter
from posthouse.server.services.idempotency import IdempotencyService, Replay
from posthouse.server.services.sending import TEST_TOKEN
from posthouse.server.store.base import MessageFilter, ServerRecord, StreamRecord
from posthouse.server.store.idempotency import IdempotencyKey

if TYPE_CHECKING:
    from posthouse.server.api.app import ApiState

MAX_SINGLE = 10 * 1024 * 1024  # docs/postmark-api.md §1.2: 10 MB for /email
MAX_BATCH = 50 * 1024 * 1024  # and 50 MB for a batch
MAX_OTHER = 1024 * 1024
PURGE_AFTER = timedelta(days=45)


def _server_token(request: Request) -> str | None:
    return request.headers.get("x-postmark-server-token")


def _stream_wire(record: StreamRecord) -> wire.MessageStream:
    purge = iso(int((from_micros(record.archived_at) + PURGE_AFTER).timestamp() * 1_000_000)) \
        if record.archived_at is not None else None
    return wire.MessageStream(
        id=record.id, server_id=record.server_id, name=record.name, description=record.description,
        message_stream_type=record.stream_type, created_at=iso(record.created_at) or "",
        updated_at=iso(record.updated_at), archived_at=iso(record.archived_at), expected_purge_date=purge,
        subscription_management_configuration=wire.SubscriptionManagementConfiguration(
            unsubscribe_handling_type=record.unsubscribe_handling))


def _server_wire(record: ServerRecord, tokens: list[str], base_url: str) -> wire.Server:
    s = record.settings
    inbound_hash = hashlib.sha256(f"posthouse-inbound-{record.id}".encode()).hexdigest()[:32]
    return wire.Server(
        id=record.id, name=record.name, api_tokens=tokens, color=s["color"],
        smtp_api_activated=s["smtp_api_activated"], raw_email_enabled=s["raw_email_enabled"],
        delivery_type=s["delivery_type"], server_link=f"{base_url}/servers/{record.id}",
        inbound_address=f"{inbound_hash}@inbound.posthouse.invalid", inbound_hook_url=s["inbound_hook_url"],
        bounce_hook_url=s["bounce_hook_url"], open_hook_url=s["open_hook_url"],
        delivery_hook_url=s["delivery_hook_url"], click_hook_url=s["click_hook_url"],
        post_first_open_only=s["post_first_open_only"], inbound_domain=s["inbound_domain"],
        inbound_hash=inbound_hash, inbound_spam_threshold=s["inbound_spam_threshold"],
        track_opens=s["track_opens"], track_links=s["track_links"],
        include_bounce_content_in_hook=s["include_bounce_content_in_hook"],
        enable_smtp_api_error_hooks=s["enable_smtp_api_error_hooks"],
    )


async def idempotent(service: IdempotencyService, request: Request, server: Server | None, body: bytes,
                     run: Callable[[IdempotencyKey | None], Awaitable[object]]) -> Response:
    """Run a send under its `Idempotency-Key` (a Posthouse extension): replay a recorded answer with
    `Idempotent-Replayed: true`, or run it holding the key. The send records its own answer with its
    mail; a refusal is recorded here; an internal failure lets the key go, so a retry runs again."""
    key = request.headers.get("idempotency-key")
    if key is None or server is None:
        return json_response(await run(None))
    began = await service.begin(server.id, key, request.method, request.url.path, body)
    if isinstance(began, Replay):
        headers = {"Idempotent-Replayed": "true"}
        if began.status_code >= 400:
            headers["X-PM-ApiErrorCode"] = str(msgspec.json.decode(began.body).get("ErrorCode", 0))
        return Response(began.body, status_code=began.status_code, media_type="application/json", headers=headers)
    try:
        result = await run(began)
    except ApiError as exc:
        error = wire.ErrorResponse(error_code=exc.error_code, message=exc.message)
        await service.finish(began, exc.http_status, wire.encoder.encode(error))
        raise
    except BaseException:
        await service.release(began)
        raise
    return json_response(result)


def register(router: Router, state: ApiState) -> None:
    accounts = state.accounts
    sending = state.sending
    history = state.history

    async def server_for(request: Request) -> Server:
        return await accounts.authenticate_server(_server_token(request))

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    # -- sending (docs/postmark-api.md §2) ---------------------------------------------------------

    async def send_email(request: Request) -> Response:
        token = _server_token(request)
        server = None if token == TEST_TOKEN else await accounts.authenticate_server(token)
        body = await read_body(request, MAX_SINGLE)

        async def run(held: IdempotencyKey | None) -> object:
            return await sending.send(server, decode(body, wire.EmailRequest, request), idempotency=held)

        return await idempotent(sending.idempotency, request, server, body, run)

    async def send_batch(request: Request) -> Response:
        token = _server_token(request)
        server = None if token == TEST_TOKEN else await accounts.authenticate_server(token)
        body = await read_body(request, MAX_BATCH)

        async def run(held: IdempotencyKey | None) -> object:
            return await sending.send_batch(server, decode(body, list[wire.EmailRequest], request), idempotency=held)

        return await idempotent(sending.idempotency, request, server, body, run)

    router.add("POST", "/email", send_email)
    router.add("POST", "/email/batch", send_batch)

    # -- bulk (docs/postmark-api.md §2.5) -----------------------------------------------------------

    bulk = state.bulk

    async def send_bulk(request: Request) -> Response:
        server = await server_for(request)
        body = await read_body(request, MAX_BATCH)

        async def run(held: IdempotencyKey | None) -> object:
            return await bulk.accept(server, decode(body, wire.BulkRequest, request), body, idempotency=held)

        return await idempotent(sending.idempotency, request, server, body, run)

    async def get_bulk(request: Request, bulk_id: str) -> Response:
        server = await server_for(request)
        return json_response(await bulk.get(server, bulk_id))

    async def list_bulk(request: Request) -> Response:
        server = await server_for(request)
        query = Query(request)
        count = query.int("count", error_code=13)
        if count is None:
            count = 100
        if not 1 <= count <= 500:
            raise ApiError(13, "The 'count' parameter must be between 1 and 500.")
        return json_response(await bulk.list(server, count, query.get("paginationkey")))

    if bulk is not None:
        router.add("POST", "/email/bulk", send_bulk)
        router.add("GET", "/email/bulk", list_bulk)
        router.add("GET", "/email/bulk/{bulk_id}", get_bulk)

    # -- messages (docs/postmark-api.md §4) --------------------------------------------------------

    async def list_outbound(request: Request) -> Response:
        server = await server_for(request)
        query = Query(request)
        count, offset = check_paging(query.int("count", 700), query.int("offset", 700), 700)
        metadata = query.with_prefix("metadata_")
        if len(metadata) > 1:
            raise ApiError(700, "Only one metadata filter can be used per request.")
        filters = MessageFilter(
            stream=query.get("messagestream") or "outbound",
            recipient=query.get("recipient"),
            from_email=query.get("fromemail"),
            tag=query.get("tag"),
            status=parse_status(query.get("status")),
            subject=query.get("subject"),
            from_time=parse_time_filter(query.get("fromdate"), end=False, error_code=700),
            to_time=parse_time_filter(query.get("todate"), end=True, error_code=700),
            metadata=metadata[0] if metadata else None,
        )
        return json_response(await history.search(server.id, filters, count, offset))

    async def outbound_details(request: Request, message_id: str) -> Response:
        server = await server_for(request)
        return json_response(await history.details(server.id, message_id))

    async def outbound_dump(request: Request, message_id: str) -> Response:
        server = await server_for(request)
        return json_response(await history.dump(server.id, message_id))

    router.add("GET", "/messages/outbound", list_outbound)
    router.add("GET", "/messages/outbound/{message_id}/details", outbound_details)
    router.add("GET", "/messages/outbound/{message_id}/dump", outbound_dump)

    # -- scheduled messages (Posthouse extensions) ---------------------------------------------

    async def cancel_outbound(request: Request, message_id: str) -> Response:
        server = await server_for(request)
        return json_response(await sending.cancel(server, message_id))

    async def schedule_outbound(request: Request, message_id: str) -> Response:
        server = await server_for(request)
        payload = decode(await read_body(request, MAX_OTHER), wire.ScheduleRequest, request)
        return json_response(await sending.reschedule(server, message_id, payload))

    router.add("PUT", "/messages/outbound/{message_id}/cancel", cancel_outbound)
    router.add("PUT", "/messages/outbound/{message_id}/schedule", schedule_outbound)

    # -- this server (docs/postmark-api.md §8.3) ---------------------------------------------------

    async def server_response(record: ServerRecord, request: Request, tokens: list[str] | None = None) -> Response:
        hints = tokens if tokens is not None else await accounts.token_hints(record.id)
        return json_response(_server_wire(record, hints, base_url(request)))

    async def get_this_server(request: Request) -> Response:
        server = await server_for(request)
        return await server_response(await accounts.get_server(server.id), request)

    async def edit_this_server(request: Request) -> Response:
        server = await server_for(request)
        payload = decode(await read_body(request, MAX_OTHER), wire.ServerRequest, request)
        return await server_response(await accounts.edit_server(server.id, payload), request)

    router.add("GET", "/server", get_this_server)
    router.add("PUT", "/server", edit_this_server)

    # -- servers, account token (docs/postmark-api.md §8.4) ----------------------------------------

    async def account(request: Request) -> None:
        await accounts.authenticate_account(request.headers.get("x-postmark-account-token"))

    def server_id_of(value: str) -> int:
        number = parse_id(value)
        if number is None:
            raise ApiError(609, f"Invalid server ID: '{value}'.")
        return number

    async def list_servers(request: Request) -> Response:
        await account(request)
        query = Query(request)
        count = query.int("count", 600)
        offset = query.int("offset", 600)
        total, records = await accounts.list_servers(0 if offset is None else offset,
                                                     100 if count is None else count, query.get("name"))
        servers = [_server_wire(r, await accounts.token_hints(r.id), base_url(request)) for r in records]
        return json_response(wire.ServerList(total_count=total, servers=servers))

    async def get_server(request: Request, server_id: str) -> Response:
        await account(request)
        return await server_response(await accounts.get_server(server_id_of(server_id)), request)

    async def create_server(request: Request) -> Response:
        await account(request)
        payload = decode(await read_body(request, MAX_OTHER), wire.ServerRequest, request)
        record, token = await accounts.create_server(payload)
        # The new token is shown once, here; only its hash is kept (docs/postmark-api.md §8.4).
        return await server_response(record, request, [token])

    async def edit_server(request: Request, server_id: str) -> Response:
        await account(request)
        payload = decode(await read_body(request, MAX_OTHER), wire.ServerRequest, request)
        return await server_response(await accounts.edit_server(server_id_of(server_id), payload), request)

    async def delete_server(request: Request, server_id: str) -> Response:
        await account(request)
        number = server_id_of(server_id)
        await accounts.delete_server(number)
        return json_response(wire.ErrorResponse(error_code=0, message=f"Server {number} removed."))

    router.add("GET", "/servers", list_servers)
    router.add("POST", "/servers", create_server)
    router.add("GET", "/servers/{server_id}", get_server)
    router.add("PUT", "/servers/{server_id}", edit_server)
    router.add("DELETE", "/servers/{server_id}", delete_server)

    # -- message streams (docs/postmark-api.md §8.1) -----------------------------------------------

    async def list_streams(request: Request) -> Response:
        server = await server_for(request)
        query = Query(request)
        wanted = (query.get("messagestreamtype") or "All").lower()
        types = {"all": None, "transactional": "Transactional", "broadcasts": "Broadcasts", "inbound": "Inbound"}
        if wanted not in types:
            raise ApiError(1221, f"Invalid 'MessageStreamType': '{query.get('messagestreamtype')}'.")
        include_archived = bool(query.bool("includearchivedstreams"))
        streams = [
            _stream_wire(s) for s in (await accounts.streams(server.id, fresh=True)).values()
            if (types[wanted] is None or s.stream_type == types[wanted])
            and (include_archived or s.archived_at is None)
        ]
        return json_response(wire.MessageStreamList(message_streams=streams, total_count=len(streams)))

    async def get_stream(request: Request, stream_id: str) -> Response:
        server = await server_for(request)
        return json_response(_stream_wire(await accounts.get_stream(server.id, stream_id)))

    async def create_stream(request: Request) -> Response:
        server = await server_for(request)
        payload = decode(await read_body(request, MAX_OTHER), wire.MessageStreamRequest, request)
        return json_response(_stream_wire(await accounts.create_stream(server.id, payload)))

    async def edit_stream(request: Request, stream_id: str) -> Response:
        server = await server_for(request)
        payload = decode(await read_body(request, MAX_OTHER), wire.MessageStreamRequest, request)
        return json_response(_stream_wire(await accounts.edit_stream(server.id, stream_id, payload)))

    async def archive_stream(request: Request, stream_id: str) -> Response:
        server = await server_for(request)
        record = _stream_wire(await accounts.archive_stream(server.id, stream_id))
        return json_response(wire.ArchivedStream(id=record.id, server_id=record.server_id,
                                                 expected_purge_date=record.expected_purge_date or ""))

    async def unarchive_stream(request: Request, stream_id: str) -> Response:
        server = await server_for(request)
        return json_response(_stream_wire(await accounts.unarchive_stream(server.id, stream_id)))

    router.add("GET", "/message-streams", list_streams)
    router.add("POST", "/message-streams", create_stream)
    router.add("GET", "/message-streams/{stream_id}", get_stream)
    router.add("PATCH", "/message-streams/{stream_id}", edit_stream)
    router.add("POST", "/message-streams/{stream_id}/archive", archive_stream)
    router.add("POST", "/message-streams/{stream_id}/unarchive", unarchive_stream)

