"""The bulk routes: accepting a bulk request, its status, and the list of them (docs/postmark-api.md §2.5)."""

from __future__ import annotations

from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SERVER, ServerCall
from posthouse.server.api.idempotency import idempotent
from posthouse.server.api.payloads import MAX_BATCH, decode, json_response, read_body
from posthouse.server.api.routing import Query, Route
from posthouse.server.errors import ApiError
from posthouse.server.store.idempotency import IdempotencyKey


async def send_bulk(call: ServerCall) -> Response:
    body = await read_body(call.request, MAX_BATCH)

    async def run(held: IdempotencyKey | None) -> object:
        payload = decode(body, wire.BulkRequest, call.request)
        return await call.state.bulk.accept(call.server, payload, body, idempotency=held)

    return await idempotent(call, body, run)


async def get_bulk(call: ServerCall, bulk_id: str) -> Response:
    return json_response(await call.state.bulk.get(call.server, bulk_id))


async def list_bulk(call: ServerCall) -> Response:
    query = Query(call.request)
    count = query.int("count", error_code=13)
    if count is None:
        count = 100
    if not 1 <= count <= 500:
        raise ApiError(13, "The 'count' parameter must be between 1 and 500.")
    return json_response(await call.state.bulk.list(call.server, count, query.get("paginationkey")))


ROUTES = (
    Route("POST", "/email/bulk", send_bulk, SERVER),
    Route("GET", "/email/bulk", list_bulk, SERVER),
    Route("GET", "/email/bulk/{bulk_id}", get_bulk, SERVER),
)
