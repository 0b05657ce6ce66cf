"""The template routes: `/templates*` and pushing templates between servers (docs/postmark-api.md §3).
Sending with a template is in `sending.py`."""

from __future__ import annotations

from typing import TypeVar, cast

from starlette.requests import Request
from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import ACCOUNT, SERVER, AccountCall, ServerCall
from posthouse.server.api.payloads import MAX_OTHER, MAX_SINGLE, decode, json_response, read_body
from posthouse.server.api.routing import Query, Route

T = TypeVar("T")


def _decode_optional(body: bytes, kind: type[T], request: Request) -> T | None:
    """A JSON body that may be `null`: the service answers that with "no template data" (1109), not 402."""
    return decode(body, cast("type[T | None]", kind | None), request)


async def list_templates(call: ServerCall) -> Response:
    query = Query(call.request)
    return json_response(
        await call.state.templates.list_templates(
            call.server.id,
            query.int("count", 1100),
            query.int("offset", 1100),
            query.get("templatetype"),
            query.get("layouttemplate"),
        )
    )


async def get_template(call: ServerCall, id_or_alias: str) -> Response:
    return json_response(await call.state.templates.get(call.server.id, id_or_alias))


async def create_template(call: ServerCall) -> Response:
    # Template bodies may be as large as the bodies of a message: the /email limit.
    payload = _decode_optional(await read_body(call.request, MAX_SINGLE), wire.TemplateRequest, call.request)
    return json_response(await call.state.templates.create(call.server.id, payload))


async def edit_template(call: ServerCall, id_or_alias: str) -> Response:
    payload = _decode_optional(await read_body(call.request, MAX_SINGLE), wire.TemplateRequest, call.request)
    return json_response(await call.state.templates.edit(call.server.id, id_or_alias, payload))


async def delete_template(call: ServerCall, id_or_alias: str) -> Response:
    return json_response(await call.state.templates.delete(call.server.id, id_or_alias))


async def validate_template(call: ServerCall) -> Response:
    body = await read_body(call.request, MAX_SINGLE)
    payload = _decode_optional(body, wire.TemplateValidationRequest, call.request)
    return json_response(await call.state.templates.validate(call.server.id, payload))


async def push_templates(call: AccountCall) -> Response:
    payload = _decode_optional(await read_body(call.request, MAX_OTHER), wire.TemplatePushRequest, call.request)
    return json_response(await call.state.templates.push(payload))


# The fixed paths first: `PUT /templates/push` must not be taken for an edit of a template aliased "push".
ROUTES = (
    Route("GET", "/templates", list_templates, SERVER),
    Route("POST", "/templates", create_template, SERVER),
    Route("POST", "/templates/validate", validate_template, SERVER),
    Route("PUT", "/templates/push", push_templates, ACCOUNT),
    Route("GET", "/templates/{id_or_alias}", get_template, SERVER),
    Route("PUT", "/templates/{id_or_alias}", edit_template, SERVER),
    Route("DELETE", "/templates/{id_or_alias}", delete_template, SERVER),
)
