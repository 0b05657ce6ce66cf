"""The outbound message routes: search, details, raw source (docs/postmark-api.md §4), and cancelling or
moving a scheduled message (Posthouse extensions)."""

from __future__ import annotations

from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SERVER, ServerCall
from posthouse.server.api.payloads import MAX_OTHER, decode, json_response, read_body
from posthouse.server.api.routing import Query, Route
from posthouse.server.errors import ApiError
from posthouse.server.services.history import check_paging, parse_status, parse_time_filter
from posthouse.server.store.base import MessageFilter


async def list_outbound(call: ServerCall) -> Response:
    query = Query(call.request)
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
    return json_response(await call.state.history.search(call.server.id, filters, count, offset))


async def outbound_details(call: ServerCall, message_id: str) -> Response:
    return json_response(await call.state.history.details(call.server.id, message_id))


async def outbound_dump(call: ServerCall, message_id: str) -> Response:
    return json_response(await call.state.history.dump(call.server.id, message_id))


async def cancel_outbound(call: ServerCall, message_id: str) -> Response:
    return json_response(await call.state.sending.cancel(call.server, message_id))


async def schedule_outbound(call: ServerCall, message_id: str) -> Response:
    payload = decode(await read_body(call.request, MAX_OTHER), wire.ScheduleRequest, call.request)
    return json_response(await call.state.sending.reschedule(call.server, message_id, payload))


ROUTES = (
    Route("GET", "/messages/outbound", list_outbound, SERVER),
    Route("GET", "/messages/outbound/{message_id}/details", outbound_details, SERVER),
    Route("GET", "/messages/outbound/{message_id}/dump", outbound_dump, SERVER),
    Route("PUT", "/messages/outbound/{message_id}/cancel", cancel_outbound, SERVER),
    Route("PUT", "/messages/outbound/{message_id}/schedule", schedule_outbound, SERVER),
)
