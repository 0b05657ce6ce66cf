"""The API's template routes: `/templates*` and sending with templates (docs/postmark-api.md §2.3, §2.4, §3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from starlette.requests import Request
from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.endpoints import MAX_BATCH, MAX_OTHER, MAX_SINGLE, idempotent
from posthouse.server.api.payloads import decode, json_response, read_body
from posthouse.server.api.routing import Query, Router
from posthouse.server.errors import ApiError
from posthouse.server.services.accounts import Server
from posthouse.server.services.sending import TEST_TOKEN
from posthouse.server.store.idempotency import IdempotencyKey

if TYPE_CHECKING:
    from posthouse.server.api.state import ApiState

T = TypeVar("T")
_BATCH_SHAPES: Any = wire.TemplateBatchRequest | list[wire.TemplateEmailRequest]


def _decode_optional(body: bytes, kind: type[T], request: Request) -> T | None:
    """A JSON body that may be `null`: the service answers that with "no template data" (1109), not 402."""
    return decode(body, cast("type[T | None]", kind | None), request)


def register(router: Router, state: ApiState) -> None:
    accounts = state.accounts
    templates = state.templates

    async def server_for(request: Request) -> Server:
        return await accounts.authenticate_server(request.headers.get("x-postmark-server-token"))

    async def sender_for(request: Request) -> Server | None:
        """The sending server; None for the test token, which validates and stores nothing (§1.1)."""
        token = request.headers.get("x-postmark-server-token")
        return None if token == TEST_TOKEN else await accounts.authenticate_server(token)

    # -- templates (docs/postmark-api.md §3.1) -----------------------------------------------------

    async def list_templates(request: Request) -> Response:
        server = await server_for(request)
        query = Query(request)
        return json_response(
            await templates.list_templates(
                server.id,
                query.int("count", 1100),
                query.int("offset", 1100),
                query.get("templatetype"),
                query.get("layouttemplate"),
            )
        )

    async def get_template(request: Request, id_or_alias: str) -> Response:
        server = await server_for(request)
        return json_response(await templates.get(server.id, id_or_alias))

    async def create_template(request: Request) -> Response:
        server = await server_for(request)
        # Template bodies may be as large as the bodies of a message: the /email limit.
        payload = _decode_optional(await read_body(request, MAX_SINGLE), wire.TemplateRequest, request)
        return json_response(await templates.create(server.id, payload))

    async def edit_template(request: Request, id_or_alias: str) -> Response:
        server = await server_for(request)
        payload = _decode_optional(await read_body(request, MAX_SINGLE), wire.TemplateRequest, request)
        return json_response(await templates.edit(server.id, id_or_alias, payload))

    async def delete_template(request: Request, id_or_alias: str) -> Response:
        server = await server_for(request)
        return json_response(await templates.delete(server.id, id_or_alias))

    async def validate_template(request: Request) -> Response:
        server = await server_for(request)
        payload = _decode_optional(await read_body(request, MAX_SINGLE), wire.TemplateValidationRequest, request)
        return json_response(await templates.validate(server.id, payload))

    async def push_templates(request: Request) -> Response:
        await accounts.authenticate_account(request.headers.get("x-postmark-account-token"))
        payload = _decode_optional(await read_body(request, MAX_OTHER), wire.TemplatePushRequest, request)
        return json_response(await templates.push(payload))

    # The fixed paths first: `PUT /templates/push` must not be taken for an edit of a template aliased "push".
    router.add("GET", "/templates", list_templates)
    router.add("POST", "/templates", create_template)
    router.add("POST", "/templates/validate", validate_template)
    router.add("PUT", "/templates/push", push_templates)
    router.add("GET", "/templates/{id_or_alias}", get_template)
    router.add("PUT", "/templates/{id_or_alias}", edit_template)
    router.add("DELETE", "/templates/{id_or_alias}", delete_template)

    # -- sending with templates (docs/postmark-api.md §2.3, §2.4) ----------------------------------

    async def send_with_template(request: Request) -> Response:
        server = await sender_for(request)
        body = await read_body(request, MAX_SINGLE)

        async def run(held: IdempotencyKey | None) -> object:
            payload = decode(body, wire.TemplateEmailRequest, request)
            return await templates.send(server, payload, idempotency=held)

        return await idempotent(state.idempotency, request, server, body, run)

    async def send_batch_with_templates(request: Request) -> Response:
        server = await sender_for(request)
        # `{"Messages": [...]}` as documented; a bare array is taken too, as /email/batch takes one.
        shapes = cast("type[wire.TemplateBatchRequest | list[wire.TemplateEmailRequest]]", _BATCH_SHAPES)
        body = await read_body(request, MAX_BATCH)

        async def run(held: IdempotencyKey | None) -> object:
            payload = decode(body, shapes, request)
            messages = payload if isinstance(payload, list) else payload.messages
            if messages is None:
                raise ApiError(300, "The 'Messages' field is required: a list of messages to send with templates.")
            return await templates.send_batch(server, messages, idempotency=held)

        return await idempotent(state.idempotency, request, server, body, run)

    router.add("POST", "/email/withTemplate", send_with_template)
    router.add("POST", "/email/batchWithTemplates", send_batch_with_templates)
