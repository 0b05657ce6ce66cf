"""The webhook routes (docs/postmark-api.md §7.1), and each webhook's delivery log and redelivery
(Posthouse extensions)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SERVER, ServerCall
from posthouse.server.api.payloads import decode, json_response, read_required_body
from posthouse.server.api.routing import Query, Route


async def _webhook_request(request: Request) -> wire.WebhookRequest:
    body = await read_required_body(request, 1355, "send the webhook as JSON")
    return decode(body, wire.WebhookRequest, request)


async def list_webhooks(call: ServerCall) -> Response:
    return json_response(await call.state.webhooks.search(call.server.id, Query(call.request).get("messagestream")))


async def create_webhook(call: ServerCall) -> Response:
    return json_response(await call.state.webhooks.create(call.server.id, await _webhook_request(call.request)))


async def get_webhook(call: ServerCall, webhook_id: str) -> Response:
    return json_response(await call.state.webhooks.get(call.server.id, webhook_id))


async def edit_webhook(call: ServerCall, webhook_id: str) -> Response:
    payload = await _webhook_request(call.request)
    return json_response(await call.state.webhooks.edit(call.server.id, webhook_id, payload))


async def delete_webhook(call: ServerCall, webhook_id: str) -> Response:
    return json_response(await call.state.webhooks.delete(call.server.id, webhook_id))


async def webhook_deliveries(call: ServerCall, webhook_id: str) -> Response:
    query = Query(call.request)
    return json_response(await call.state.webhooks.deliveries(
        call.server.id, webhook_id, query.int("count", 1361), query.int("offset", 1361)))


async def redeliver(call: ServerCall, webhook_id: str, delivery_id: str) -> Response:
    return json_response(await call.state.webhooks.redeliver(call.server.id, webhook_id, delivery_id))


ROUTES = (
    Route("GET", "/webhooks", list_webhooks, SERVER),
    Route("POST", "/webhooks", create_webhook, SERVER),
    Route("GET", "/webhooks/{webhook_id}", get_webhook, SERVER),
    Route("PUT", "/webhooks/{webhook_id}", edit_webhook, SERVER),
    Route("DELETE", "/webhooks/{webhook_id}", delete_webhook, SERVER),
    Route("GET", "/webhooks/{webhook_id}/deliveries", webhook_deliveries, SERVER),
    Route("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", redeliver, SERVER),
)
