"""The API's feedback routes: bounces (docs/postmark-api.md §5), suppressions (§8.2) and webhooks (§7.1)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.payloads import decode, json_response, read_body
from posthouse.server.api.routing import Query, Router
from posthouse.server.errors import ApiError
from posthouse.server.services.accounts import Server
from posthouse.server.services.bounces import QUERY_ERROR, BounceService, parse_bounce_type
from posthouse.server.services.history import MAX_COUNT, check_paging, parse_time_filter
from posthouse.server.services.suppressions import SuppressionService, parse_origin, parse_reason
from posthouse.server.services.webhooks import WebhookService
from posthouse.server.store.feedback import BounceFilter

if TYPE_CHECKING:
    from posthouse.server.api.state import ApiState

MAX_BODY = 1024 * 1024
ServerFor = Callable[[Request], Awaitable[Server]]
DATE_ERROR = 900  # Postmark's "bad date/time parameter"; the suppression API has no code of its own for it


async def _body(request: Request, error_code: int, what: str) -> bytes:
    """The JSON body, which these endpoints require: an empty one is Postmark's `error_code`."""
    body = await read_body(request, MAX_BODY)
    if not body.strip():
        raise ApiError(error_code, f"The request body is required: {what}.")
    return body


def register(router: Router, state: ApiState) -> None:
    accounts = state.accounts
    bounces = state.bounces
    suppressions = state.suppressions
    webhooks = state.webhooks

    async def server_for(request: Request) -> Server:
        return await accounts.authenticate_server(request.headers.get("x-postmark-server-token"))

    _register_bounces(router, server_for, bounces)
    _register_suppressions(router, server_for, suppressions)
    _register_webhooks(router, server_for, webhooks)


def _register_bounces(router: Router, server_for: ServerFor, bounces: BounceService) -> None:
    """docs/postmark-api.md §5."""

    async def delivery_stats(request: Request) -> Response:
        server = await server_for(request)
        return json_response(await bounces.delivery_stats(server.id))

    async def list_bounces(request: Request) -> Response:
        server = await server_for(request)
        query = Query(request)
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
        return json_response(await bounces.search(server.id, filters, count, offset))

    async def bounce_tags(request: Request) -> Response:
        server = await server_for(request)
        return json_response(await bounces.tags(server.id))

    async def get_bounce(request: Request, bounce_id: str) -> Response:
        server = await server_for(request)
        return json_response(await bounces.get(server.id, bounce_id))

    async def bounce_dump(request: Request, bounce_id: str) -> Response:
        server = await server_for(request)
        return json_response(await bounces.dump(server.id, bounce_id))

    async def activate_bounce(request: Request, bounce_id: str) -> Response:
        server = await server_for(request)
        return json_response(await bounces.activate(server.id, bounce_id))

    router.add("GET", "/deliverystats", delivery_stats)
    router.add("GET", "/bounces", list_bounces)
    router.add("GET", "/bounces/tags", bounce_tags)  # before /bounces/{bounce_id}, which would take "tags"
    router.add("GET", "/bounces/{bounce_id}", get_bounce)
    router.add("GET", "/bounces/{bounce_id}/dump", bounce_dump)
    router.add("PUT", "/bounces/{bounce_id}/activate", activate_bounce)


def _register_suppressions(router: Router, server_for: ServerFor, suppressions: SuppressionService) -> None:
    """docs/postmark-api.md §8.2."""

    async def dump_suppressions(request: Request, stream_id: str) -> Response:
        server = await server_for(request)
        query = Query(request)
        return json_response(
            await suppressions.dump(
                server.id,
                stream_id,
                reason=parse_reason(query.get("suppressionreason")),
                origin=parse_origin(query.get("origin")),
                email=query.get("emailaddress"),
                from_time=parse_time_filter(query.get("fromdate"), end=False, error_code=DATE_ERROR),
                to_time=parse_time_filter(query.get("todate"), end=True, error_code=DATE_ERROR),
            )
        )

    async def suppression_request(request: Request) -> wire.SuppressionRequest:
        body = await _body(request, 1409, 'send {"Suppressions": [{"EmailAddress": "…"}]}')
        return decode(body, wire.SuppressionRequest, request)

    async def create_suppressions(request: Request, stream_id: str) -> Response:
        server = await server_for(request)
        payload = await suppression_request(request)
        return json_response(await suppressions.create(server.id, stream_id, payload))

    async def delete_suppressions(request: Request, stream_id: str) -> Response:
        server = await server_for(request)
        payload = await suppression_request(request)
        return json_response(await suppressions.delete(server.id, stream_id, payload))

    router.add("GET", "/message-streams/{stream_id}/suppressions/dump", dump_suppressions)
    router.add("POST", "/message-streams/{stream_id}/suppressions", create_suppressions)
    router.add("POST", "/message-streams/{stream_id}/suppressions/delete", delete_suppressions)


def _register_webhooks(router: Router, server_for: ServerFor, webhooks: WebhookService) -> None:
    """docs/postmark-api.md §7.1, and each webhook's delivery log and redelivery (extensions)."""

    async def webhook_request(request: Request) -> wire.WebhookRequest:
        body = await _body(request, 1355, "send the webhook as JSON")
        return decode(body, wire.WebhookRequest, request)

    async def list_webhooks(request: Request) -> Response:
        server = await server_for(request)
        return json_response(await webhooks.search(server.id, Query(request).get("messagestream")))

    async def create_webhook(request: Request) -> Response:
        server = await server_for(request)
        return json_response(await webhooks.create(server.id, await webhook_request(request)))

    async def get_webhook(request: Request, webhook_id: str) -> Response:
        server = await server_for(request)
        return json_response(await webhooks.get(server.id, webhook_id))

    async def edit_webhook(request: Request, webhook_id: str) -> Response:
        server = await server_for(request)
        return json_response(await webhooks.edit(server.id, webhook_id, await webhook_request(request)))

    async def delete_webhook(request: Request, webhook_id: str) -> Response:
        server = await server_for(request)
        return json_response(await webhooks.delete(server.id, webhook_id))

    async def webhook_deliveries(request: Request, webhook_id: str) -> Response:
        server = await server_for(request)
        query = Query(request)
        return json_response(
            await webhooks.deliveries(server.id, webhook_id, query.int("count", 1361), query.int("offset", 1361))
        )

    async def redeliver(request: Request, webhook_id: str, delivery_id: str) -> Response:
        server = await server_for(request)
        return json_response(await webhooks.redeliver(server.id, webhook_id, delivery_id))

    router.add("GET", "/webhooks", list_webhooks)
    router.add("POST", "/webhooks", create_webhook)
    router.add("GET", "/webhooks/{webhook_id}", get_webhook)
    router.add("PUT", "/webhooks/{webhook_id}", edit_webhook)
    router.add("DELETE", "/webhooks/{webhook_id}", delete_webhook)
    router.add("GET", "/webhooks/{webhook_id}/deliveries", webhook_deliveries)
    router.add("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", redeliver)
