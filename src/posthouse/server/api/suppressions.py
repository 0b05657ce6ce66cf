"""The suppression routes of a message stream: dump, suppress, reactivate (docs/postmark-api.md §8.2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SERVER, ServerCall
from posthouse.server.api.payloads import decode, json_response, read_required_body
from posthouse.server.api.routing import Query, Route
from posthouse.server.services.history import parse_time_filter
from posthouse.server.services.suppressions import parse_origin, parse_reason

DATE_ERROR = 900  # Postmark's "bad date/time parameter"; the suppression API has no code of its own for it


async def _suppression_request(request: Request) -> wire.SuppressionRequest:
    body = await read_required_body(request, 1409, 'send {"Suppressions": [{"EmailAddress": "…"}]}')
    return decode(body, wire.SuppressionRequest, request)


async def dump_suppressions(call: ServerCall, stream_id: str) -> Response:
    query = Query(call.request)
    return json_response(
        await call.state.suppressions.dump(
            call.server.id,
            stream_id,
            reason=parse_reason(query.get("suppressionreason")),
            origin=parse_origin(query.get("origin")),
            email=query.get("emailaddress"),
            from_time=parse_time_filter(query.get("fromdate"), end=False, error_code=DATE_ERROR),
            to_time=parse_time_filter(query.get("todate"), end=True, error_code=DATE_ERROR),
        )
    )


async def create_suppressions(call: ServerCall, stream_id: str) -> Response:
    payload = await _suppression_request(call.request)
    return json_response(await call.state.suppressions.create(call.server.id, stream_id, payload))


async def delete_suppressions(call: ServerCall, stream_id: str) -> Response:
    payload = await _suppression_request(call.request)
    return json_response(await call.state.suppressions.delete(call.server.id, stream_id, payload))


ROUTES = (
    Route("GET", "/message-streams/{stream_id}/suppressions/dump", dump_suppressions, SERVER),
    Route("POST", "/message-streams/{stream_id}/suppressions", create_suppressions, SERVER),
    Route("POST", "/message-streams/{stream_id}/suppressions/delete", delete_suppressions, SERVER),
)
