"""The message stream routes (docs/postmark-api.md §8.1), with the one conversion of a stream record to
Postmark's shape."""

from __future__ import annotations

from datetime import timedelta

from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SERVER, ServerCall
from posthouse.server.api.payloads import MAX_OTHER, decode, json_response, read_body
from posthouse.server.api.routing import Query, Route
from posthouse.server.errors import ApiError
from posthouse.server.services.clock import from_micros, iso
from posthouse.server.store.base import StreamRecord

PURGE_AFTER = timedelta(days=45)
_TYPES = {"all": None, "transactional": "Transactional", "broadcasts": "Broadcasts", "inbound": "Inbound"}


def _stream_wire(record: StreamRecord) -> wire.MessageStream:
    purge = iso(int((from_micros(record.archived_at) + PURGE_AFTER).timestamp() * 1_000_000)) \
        if record.archived_at is not None else None
    return wire.MessageStream(
        id=record.id, server_id=record.server_id, name=record.name, description=record.description,
        message_stream_type=record.stream_type, created_at=iso(record.created_at) or "",
        updated_at=iso(record.updated_at), archived_at=iso(record.archived_at), expected_purge_date=purge,
        subscription_management_configuration=wire.SubscriptionManagementConfiguration(
            unsubscribe_handling_type=record.unsubscribe_handling))


async def list_streams(call: ServerCall) -> Response:
    query = Query(call.request)
    wanted = (query.get("messagestreamtype") or "All").lower()
    if wanted not in _TYPES:
        raise ApiError(1221, f"Invalid 'MessageStreamType': '{query.get('messagestreamtype')}'.")
    include_archived = bool(query.bool("includearchivedstreams"))
    streams = [
        _stream_wire(s) for s in (await call.state.accounts.streams(call.server.id, fresh=True)).values()
        if (_TYPES[wanted] is None or s.stream_type == _TYPES[wanted])
        and (include_archived or s.archived_at is None)
    ]
    return json_response(wire.MessageStreamList(message_streams=streams, total_count=len(streams)))


async def get_stream(call: ServerCall, stream_id: str) -> Response:
    return json_response(_stream_wire(await call.state.accounts.get_stream(call.server.id, stream_id)))


async def create_stream(call: ServerCall) -> Response:
    payload = decode(await read_body(call.request, MAX_OTHER), wire.MessageStreamRequest, call.request)
    return json_response(_stream_wire(await call.state.accounts.create_stream(call.server.id, payload)))


async def edit_stream(call: ServerCall, stream_id: str) -> Response:
    payload = decode(await read_body(call.request, MAX_OTHER), wire.MessageStreamRequest, call.request)
    return json_response(_stream_wire(await call.state.accounts.edit_stream(call.server.id, stream_id, payload)))


async def archive_stream(call: ServerCall, stream_id: str) -> Response:
    record = _stream_wire(await call.state.accounts.archive_stream(call.server.id, stream_id))
    return json_response(wire.ArchivedStream(id=record.id, server_id=record.server_id,
                                             expected_purge_date=record.expected_purge_date or ""))


async def unarchive_stream(call: ServerCall, stream_id: str) -> Response:
    return json_response(_stream_wire(await call.state.accounts.unarchive_stream(call.server.id, stream_id)))


ROUTES = (
    Route("GET", "/message-streams", list_streams, SERVER),
    Route("POST", "/message-streams", create_stream, SERVER),
    Route("GET", "/message-streams/{stream_id}", get_stream, SERVER),
    Route("PATCH", "/message-streams/{stream_id}", edit_stream, SERVER),
    Route("POST", "/message-streams/{stream_id}/archive", archive_stream, SERVER),
    Route("POST", "/message-streams/{stream_id}/unarchive", unarchive_stream, SERVER),
)
