"""The bounce routes: delivery stats, search, one bounce, its source, reactivation (docs/postmark-api.md §5)."""

from __future__ import annotations

from starlette.responses import Response

from posthouse.server.api.access import SERVER, ServerCall
from posthouse.server.api.payloads import json_response
from posthouse.server.api.routing import Query, Route
from posthouse.server.services.bounces import QUERY_ERROR, parse_bounce_type
from posthouse.server.services.history import MAX_COUNT, check_paging, parse_time_filter
from posthouse.server.store.feedback import BounceFilter


async def delivery_stats(call: ServerCall) -> Response:
    return json_response(await call.state.bounces.delivery_stats(call.server.id))


async def list_bounces(call: ServerCall) -> Response:
    query = Query(call.request)
    count, offset = query.int("count", QUERY_ERROR), query.int("offset", QUERY_ERROR)
    message_id = query.get("messageid")
    if message_id:
        # Postmark: count and offset are not required when searching by messageID.
        count = MAX_COUNT if count is None else count
        offset = 0 if offset is None else offset
    count, offset = check_paging(count, offset, QUERY_ERROR)
    filters = BounceFilter(
        type=parse_bounce_type(query.get("type")),
        inactive=query.bool("inactive"),
        email=query.get("emailfilter"),
        tag=query.get("tag"),
        message_id=message_id.lower() if message_id else None,
        # Without `messagestream` every stream's bounces are listed, as /deliverystats counts them.
        stream=query.get("messagestream"),
        from_time=parse_time_filter(query.get("fromdate"), end=False, error_code=QUERY_ERROR),
        to_time=parse_time_filter(query.get("todate"), end=True, error_code=QUERY_ERROR),
    )
    return json_response(await call.state.bounces.search(call.server.id, filters, count, offset))


async def bounce_tags(call: ServerCall) -> Response:
    return json_response(await call.state.bounces.tags(call.server.id))


async def get_bounce(call: ServerCall, bounce_id: str) -> Response:
    return json_response(await call.state.bounces.get(call.server.id, bounce_id))


async def bounce_dump(call: ServerCall, bounce_id: str) -> Response:
    return json_response(await call.state.bounces.dump(call.server.id, bounce_id))


async def activate_bounce(call: ServerCall, bounce_id: str) -> Response:
    return json_response(await call.state.bounces.activate(call.server.id, bounce_id))


ROUTES = (
    Route("GET", "/deliverystats", delivery_stats, SERVER),
    Route("GET", "/bounces", list_bounces, SERVER),
    Route("GET", "/bounces/tags", bounce_tags, SERVER),  # before /bounces/{bounce_id}, which would take "tags"
    Route("GET", "/bounces/{bounce_id}", get_bounce, SERVER),
    Route("GET", "/bounces/{bounce_id}/dump", bounce_dump, SERVER),
    Route("PUT", "/bounces/{bounce_id}/activate", activate_bounce, SERVER),
)
