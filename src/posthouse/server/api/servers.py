"""The server routes: this server by its token (docs/postmark-api.md §8.3) and every server by the
account token (§8.4), with the one conversion of a server record to Postmark's shape."""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import ACCOUNT, SERVER, AccountCall, ServerCall
from posthouse.server.api.payloads import MAX_OTHER, decode, json_response, read_body
from posthouse.server.api.routing import Query, Route, parse_id
from posthouse.server.api.state import ApiState
from posthouse.server.errors import ApiError
from posthouse.server.store.base import ServerRecord


async def _inbound_address(state: ApiState, server_id: int) -> tuple[str, str]:
    """(InboundHash, InboundAddress): the address the inbound listener takes for this server (issue 16)."""
    if state.inbound is not None:
        return await state.inbound.address_of(server_id)
    inbound_hash = hashlib.sha256(f"posthouse-inbound-{server_id}".encode()).hexdigest()[:32]
    return inbound_hash, f"{inbound_hash}@inbound.posthouse.invalid"


def _server_wire(record: ServerRecord, tokens: list[str], base_url: str, inbound: tuple[str, str],
                 retention_days: int) -> wire.Server:
    s = record.settings
    inbound_hash, inbound_address = inbound
    return wire.Server(
        id=record.id, name=record.name, api_tokens=tokens, color=s["color"],
        smtp_api_activated=s["smtp_api_activated"], raw_email_enabled=s["raw_email_enabled"],
        delivery_type=s["delivery_type"], server_link=f"{base_url}/servers/{record.id}",
        inbound_address=inbound_address, inbound_hook_url=s["inbound_hook_url"],
        bounce_hook_url=s["bounce_hook_url"], open_hook_url=s["open_hook_url"],
        delivery_hook_url=s["delivery_hook_url"], click_hook_url=s["click_hook_url"],
        post_first_open_only=s["post_first_open_only"], inbound_domain=s["inbound_domain"],
        inbound_hash=inbound_hash, inbound_spam_threshold=s["inbound_spam_threshold"],
        track_opens=s["track_opens"], track_links=s["track_links"],
        include_bounce_content_in_hook=s["include_bounce_content_in_hook"],
        enable_smtp_api_error_hooks=s["enable_smtp_api_error_hooks"], retention_days=retention_days,
    )


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _server_response(state: ApiState, request: Request, record: ServerRecord,
                           tokens: list[str] | None = None) -> Response:
    hints = tokens if tokens is not None else await state.accounts.token_hints(record.id)
    retention = state.accounts.retention_days(record.settings)
    return json_response(_server_wire(record, hints, _base_url(request), await _inbound_address(state, record.id),
                                      retention))


def _server_id(value: str) -> int:
    number = parse_id(value)
    if number is None:
        raise ApiError(609, f"Invalid server ID: '{value}'.")
    return number


# -- this server, server token (§8.3) -------------------------------------------------------------


async def get_this_server(call: ServerCall) -> Response:
    record = await call.state.accounts.get_server(call.server.id)
    return await _server_response(call.state, call.request, record)


async def edit_this_server(call: ServerCall) -> Response:
    payload = decode(await read_body(call.request, MAX_OTHER), wire.ServerRequest, call.request)
    record = await call.state.accounts.edit_server(call.server.id, payload)
    return await _server_response(call.state, call.request, record)


# -- servers, account token (§8.4) ----------------------------------------------------------------


async def list_servers(call: AccountCall) -> Response:
    accounts = call.state.accounts
    query = Query(call.request)
    count = query.int("count", 600)
    offset = query.int("offset", 600)
    total, records = await accounts.list_servers(0 if offset is None else offset,
                                                 100 if count is None else count, query.get("name"))
    servers = [_server_wire(r, await accounts.token_hints(r.id), _base_url(call.request),
                            await _inbound_address(call.state, r.id), accounts.retention_days(r.settings))
               for r in records]
    return json_response(wire.ServerList(total_count=total, servers=servers))


async def get_server(call: AccountCall, server_id: str) -> Response:
    record = await call.state.accounts.get_server(_server_id(server_id))
    return await _server_response(call.state, call.request, record)


async def create_server(call: AccountCall) -> Response:
    payload = decode(await read_body(call.request, MAX_OTHER), wire.ServerRequest, call.request)
    record, token = await call.state.accounts.create_server(payload)
    # The new token is shown once, here; only its hash is kept (docs/postmark-api.md §8.4).
    return await _server_response(call.state, call.request, record, [token])


async def edit_server(call: AccountCall, server_id: str) -> Response:
    payload = decode(await read_body(call.request, MAX_OTHER), wire.ServerRequest, call.request)
    record = await call.state.accounts.edit_server(_server_id(server_id), payload)
    return await _server_response(call.state, call.request, record)


async def delete_server(call: AccountCall, server_id: str) -> Response:
    number = _server_id(server_id)
    await call.state.accounts.delete_server(number)
    return json_response(wire.ErrorResponse(error_code=0, message=f"Server {number} removed."))


ROUTES = (
    Route("GET", "/server", get_this_server, SERVER),
    Route("PUT", "/server", edit_this_server, SERVER),
    Route("GET", "/servers", list_servers, ACCOUNT),
    Route("POST", "/servers", create_server, ACCOUNT),
    Route("GET", "/servers/{server_id}", get_server, ACCOUNT),
    Route("PUT", "/servers/{server_id}", edit_server, ACCOUNT),
    Route("DELETE", "/servers/{server_id}", delete_server, ACCOUNT),
)
