"""The outbound message routes: search, details, raw source, opens and clicks (docs/postmark-api.md §4), and
cancelling or moving a scheduled message (Posthouse extensions)."""

from __future__ import annotations

from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SERVER, ServerCall
from posthouse.server.api.payloads import MAX_OTHER, decode, json_response, read_body
from posthouse.server.api.routing import Query, Route
from posthouse.server.errors import ApiError
from posthouse.server.services.history import check_paging, parse_status, parse_time_filter
from posthouse.server.services.stats import MESSAGES_QUERY_ERROR, paging, parse_hit_time
from posthouse.server.store.base import MessageFilter
from posthouse.server.store.hits import HitFilter


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


def _hit_filter(query: Query) -> HitFilter:
    """Postmark's filters of the Opens and Clicks searches (docs/postmark-api.md §4.5); the names match
    in any case and with or without `_` (postmark-python sends `clientName`)."""
    return HitFilter(
        stream=query.get("messagestream") or "outbound",
        recipient=query.get("recipient"),
        tag=query.get("tag"),
        client_name=query.get("client_name"),
        client_company=query.get("client_company"),
        client_family=query.get("client_family"),
        os_name=query.get("os_name"),
        os_family=query.get("os_family"),
        os_company=query.get("os_company"),
        platform=query.get("platform"),
        country=query.get("country"),
        region=query.get("region"),
        city=query.get("city"),
        from_time=parse_hit_time(query.get("fromdate"), end=False),
        to_time=parse_hit_time(query.get("todate"), end=True),
    )


async def list_opens(call: ServerCall) -> Response:
    query = Query(call.request)
    count, offset = paging(query.int("count", MESSAGES_QUERY_ERROR), query.int("offset", MESSAGES_QUERY_ERROR))
    return json_response(await call.state.stats.opens(call.server.id, _hit_filter(query), count, offset))


async def list_clicks(call: ServerCall) -> Response:
    query = Query(call.request)
    count, offset = paging(query.int("count", MESSAGES_QUERY_ERROR), query.int("offset", MESSAGES_QUERY_ERROR))
    return json_response(await call.state.stats.clicks(call.server.id, _hit_filter(query), count, offset))


async def message_opens(call: ServerCall, message_id: str) -> Response:
    query = Query(call.request)
    count, offset = paging(query.int("count", MESSAGES_QUERY_ERROR), query.int("offset", MESSAGES_QUERY_ERROR))
    return json_response(await call.state.stats.message_opens(call.server.id, message_id, count, offset))


async def message_clicks(call: ServerCall, message_id: str) -> Response:
    query = Query(call.request)
    count, offset = paging(query.int("count", MESSAGES_QUERY_ERROR), query.int("offset", MESSAGES_QUERY_ERROR))
    return json_response(await call.state.stats.message_clicks(call.server.id, message_id, count, offset))


ROUTES = (
    Route("GET", "/messages/outbound", list_outbound, SERVER),
    # Before `/messages/outbound/{message_id}/…`, which would take "opens" or "clicks" for an id.
    Route("GET", "/messages/outbound/opens", list_opens, SERVER),
    Route("GET", "/messages/outbound/opens/{message_id}", message_opens, SERVER),
    Route("GET", "/messages/outbound/clicks", list_clicks, SERVER),
    Route("GET", "/messages/outbound/clicks/{message_id}", message_clicks, SERVER),
    Route("GET", "/messages/outbound/{message_id}/details", outbound_details, SERVER),
    Route("GET", "/messages/outbound/{message_id}/dump", outbound_dump, SERVER),
    Route("PUT", "/messages/outbound/{message_id}/cancel", cancel_outbound, SERVER),
    Route("PUT", "/messages/outbound/{message_id}/schedule", schedule_outbound, SERVER),
)
