"""The data removal routes (account token): request one, read its status (docs/postmark-api.md §8.4)."""

from __future__ import annotations

from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import ACCOUNT, AccountCall
from posthouse.server.api.payloads import MAX_OTHER, decode, json_response, read_body
from posthouse.server.api.routing import Route, parse_id
from posthouse.server.api.state import ApiState
from posthouse.server.errors import ApiError
from posthouse.server.services.retention import DataRemovalService


def _service(state: ApiState) -> DataRemovalService:
    if state.removals is None:
        raise ApiError(1302, "Data removals are not available on this node.")
    return state.removals


async def request_removal(call: AccountCall) -> Response:
    body = await read_body(call.request, MAX_OTHER)
    if not body.strip():
        raise ApiError(1300, "The request body is empty: send RequestedBy, RequestedFor and NotifyWhenCompleted.")
    payload = decode(body, wire.DataRemovalRequest, call.request)
    return json_response(await _service(call.state).request(payload))


async def get_removal(call: AccountCall, removal_id: str) -> Response:
    number = parse_id(removal_id)
    if number is None:
        raise ApiError(1301, f"Invalid data removal request ID: '{removal_id}'.")
    return json_response(await _service(call.state).get(number))


ROUTES = (
    Route("POST", "/data-removals", request_removal, ACCOUNT),
    Route("GET", "/data-removals/{removal_id}", get_removal, ACCOUNT),
)
