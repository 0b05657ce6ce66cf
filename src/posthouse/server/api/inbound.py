"""The inbound routes: received messages (docs/postmark-api.md §4.6) and inbound rules (§8.5). The work is
`services.inbound`'s; these only read the request."""

from __future__ import annotations

from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SERVER, ServerCall
from posthouse.server.api.payloads import MAX_OTHER, decode, json_response, read_body
from posthouse.server.api.routing import Query, Route, parse_id
from posthouse.server.api.state import ApiState
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.history import parse_time_filter
from posthouse.server.services.inbound import InboundService, parse_inbound_status
from posthouse.server.store.inbound import InboundFilter


def _inbound(state: ApiState) -> InboundService:
    if state.inbound is None:  # an API built without inbound (some tests' ApiState): as if not served
        raise NotFoundError(701, "Inbound messages are not served here.", 404)
    return state.inbound


async def list_inbound(call: ServerCall) -> Response:
    query = Query(call.request)
    status = parse_inbound_status(query.get("status"))
    filters = InboundFilter(
        recipient=query.get("recipient"), from_email=query.get("fromemail"), tag=query.get("tag"),
        subject=query.get("subject"), mailbox_hash=query.get("mailboxhash"),
        statuses=(status,) if status else (),
        from_time=parse_time_filter(query.get("fromdate"), end=False, error_code=700),
        to_time=parse_time_filter(query.get("todate"), end=True, error_code=700))
    return json_response(await _inbound(call.state).search(call.server.id, filters, query.int("count", 700),
                                                           query.int("offset", 700)))


async def inbound_details(call: ServerCall, message_id: str) -> Response:
    return json_response(await _inbound(call.state).details(call.server.id, message_id))


async def bypass_inbound(call: ServerCall, message_id: str) -> Response:
    return json_response(await _inbound(call.state).bypass(call.server.id, message_id))


async def retry_inbound(call: ServerCall, message_id: str) -> Response:
    return json_response(await _inbound(call.state).retry(call.server.id, message_id))


async def list_rules(call: ServerCall) -> Response:
    query = Query(call.request)
    return json_response(await _inbound(call.state).rules(call.server.id, query.int("count", 800),
                                                          query.int("offset", 800)))


async def create_rule(call: ServerCall) -> Response:
    payload = decode(await read_body(call.request, MAX_OTHER), wire.InboundRuleRequest, call.request)
    return json_response(await _inbound(call.state).create_rule(call.server.id, payload))


async def delete_rule(call: ServerCall, rule_id: str) -> Response:
    number = parse_id(rule_id)
    if number is None:
        raise ApiError(812, f"Invalid inbound rule ID: '{rule_id}'.")
    return json_response(await _inbound(call.state).delete_rule(call.server.id, number))


ROUTES = (
    Route("GET", "/messages/inbound", list_inbound, SERVER),
    Route("GET", "/messages/inbound/{message_id}/details", inbound_details, SERVER),
    Route("PUT", "/messages/inbound/{message_id}/bypass", bypass_inbound, SERVER),
    Route("PUT", "/messages/inbound/{message_id}/retry", retry_inbound, SERVER),
    Route("GET", "/triggers/inboundrules", list_rules, SERVER),
    Route("POST", "/triggers/inboundrules", create_rule, SERVER),
    Route("DELETE", "/triggers/inboundrules/{rule_id}", delete_rule, SERVER),
)
