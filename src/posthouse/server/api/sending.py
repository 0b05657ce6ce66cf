"""The send routes: one message, a batch, and both rendered from templates (docs/postmark-api.md §2.1–§2.4)."""

from __future__ import annotations

from typing import Any, cast

from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SERVER_OR_TEST, SendCall
from posthouse.server.api.idempotency import idempotent
from posthouse.server.api.payloads import MAX_BATCH, MAX_SINGLE, decode, read_body
from posthouse.server.api.routing import Route
from posthouse.server.errors import ApiError
from posthouse.server.store.idempotency import IdempotencyKey

_BATCH_SHAPES: Any = wire.TemplateBatchRequest | list[wire.TemplateEmailRequest]


async def send_email(call: SendCall) -> Response:
    body = await read_body(call.request, MAX_SINGLE)

    async def run(held: IdempotencyKey | None) -> object:
        payload = decode(body, wire.EmailRequest, call.request)
        return await call.state.sending.send(call.server, payload, idempotency=held)

    return await idempotent(call, body, run)


async def send_batch(call: SendCall) -> Response:
    body = await read_body(call.request, MAX_BATCH)

    async def run(held: IdempotencyKey | None) -> object:
        payload = decode(body, list[wire.EmailRequest], call.request)
        return await call.state.sending.send_batch(call.server, payload, idempotency=held)

    return await idempotent(call, body, run)


async def send_with_template(call: SendCall) -> Response:
    body = await read_body(call.request, MAX_SINGLE)

    async def run(held: IdempotencyKey | None) -> object:
        payload = decode(body, wire.TemplateEmailRequest, call.request)
        return await call.state.templates.send(call.server, payload, idempotency=held)

    return await idempotent(call, body, run)


async def send_batch_with_templates(call: SendCall) -> Response:
    # `{"Messages": [...]}` as documented; a bare array is taken too, as /email/batch takes one.
    shapes = cast("type[wire.TemplateBatchRequest | list[wire.TemplateEmailRequest]]", _BATCH_SHAPES)
    body = await read_body(call.request, MAX_BATCH)

    async def run(held: IdempotencyKey | None) -> object:
        payload = decode(body, shapes, call.request)
        messages = payload if isinstance(payload, list) else payload.messages
        if messages is None:
            raise ApiError(300, "The 'Messages' field is required: a list of messages to send with templates.")
        return await call.state.templates.send_batch(call.server, messages, idempotency=held)

    return await idempotent(call, body, run)


ROUTES = (
    Route("POST", "/email", send_email, SERVER_OR_TEST),
    Route("POST", "/email/batch", send_batch, SERVER_OR_TEST),
    Route("POST", "/email/withTemplate", send_with_template, SERVER_OR_TEST),
    Route("POST", "/email/batchWithTemplates", send_batch_with_templates, SERVER_OR_TEST),
)
