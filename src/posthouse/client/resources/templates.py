"""Templates of a server: list, get, create, edit, delete, validate (docs/postmark-api.md §3.1), and pushing
templates from one server to another with the account token (§3.2).

Sending with a template is `outbound.send_with_template` and `outbound.send_batch_with_templates`.
"""

from __future__ import annotations

from posthouse import wire
from posthouse.client.protocol import Call, acknowledged, json_decoder, path_segment
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = [
    "AsyncAccountTemplates",
    "AsyncTemplates",
    "SyncAccountTemplates",
    "SyncTemplates",
    "create_call",
    "delete_call",
    "edit_call",
    "get_call",
    "list_call",
    "push_call",
    "validate_call",
]

_LIST = json_decoder(wire.TemplateList)
_TEMPLATE = json_decoder(wire.Template)
_SUMMARY = json_decoder(wire.TemplateSummary)
_VALIDATION = json_decoder(wire.TemplateValidationResponse)
_PUSH = json_decoder(wire.TemplatePushResponse)


def _path(id_or_alias: int | str) -> str:
    return f"/templates/{path_segment(id_or_alias)}"


def list_call(
    count: int = 100, offset: int = 0, template_type: str | None = None, layout_template: str | None = None
) -> Call[wire.TemplateList]:
    params = {"count": str(count), "offset": str(offset)}
    if template_type is not None:
        params["templatetype"] = template_type
    if layout_template is not None:
        params["layouttemplate"] = layout_template
    return Call("GET", "/templates", _LIST, params=params)


def get_call(id_or_alias: int | str) -> Call[wire.Template]:
    return Call("GET", _path(id_or_alias), _TEMPLATE)


def create_call(template: wire.TemplateRequest) -> Call[wire.TemplateSummary]:
    # A retry after a lost answer could create a second template, or meet its own alias: not replayable.
    return Call("POST", "/templates", _SUMMARY, body=wire.encoder.encode(template), replayable=False)


def edit_call(id_or_alias: int | str, changes: wire.TemplateRequest) -> Call[wire.TemplateSummary]:
    # PUT sets the given fields to the given values: doing it twice leaves the same state.
    return Call("PUT", _path(id_or_alias), _SUMMARY, body=wire.encoder.encode(changes))


def delete_call(id_or_alias: int | str) -> Call[None]:
    # A retry after a lost answer would report the deleted template as missing: not replayable.
    return Call("DELETE", _path(id_or_alias), acknowledged, replayable=False)


def validate_call(request: wire.TemplateValidationRequest) -> Call[wire.TemplateValidationResponse]:
    # Validation renders and stores nothing: replayable.
    return Call("POST", "/templates/validate", _VALIDATION, body=wire.encoder.encode(request))


def push_call(
    source_server_id: int, destination_server_id: int, *, perform_changes: bool = True
) -> Call[wire.TemplatePushResponse]:
    # A second push finds the destination's templates identical and leaves them alone: replayable.
    request = wire.TemplatePushRequest(
        source_server_id=source_server_id,
        destination_server_id=destination_server_id,
        perform_changes=perform_changes,
    )
    return Call("PUT", "/templates/push", _PUSH, body=wire.encoder.encode(request))


class AsyncTemplates(AsyncResource):
    """`client.templates` of the async `ServerClient`."""

    async def list(
        self,
        count: int = 100,
        offset: int = 0,
        *,
        template_type: str | None = None,
        layout_template: str | None = None,
    ) -> wire.TemplateList:
        """One page of templates; `template_type` is All, Standard or Layout, `layout_template` keeps the
        templates that use that layout (by alias)."""
        return await self._http.run(list_call(count, offset, template_type, layout_template))

    async def get(self, id_or_alias: int | str) -> wire.Template:
        """A template with its bodies, by TemplateId (an int) or alias (a string)."""
        return await self._http.run(get_call(id_or_alias))

    async def create(self, template: wire.TemplateRequest) -> wire.TemplateSummary:
        """A new template: `name`, and a `subject` and a body for a Standard one (Mustachio syntax)."""
        return await self._http.run(create_call(template))

    async def edit(self, id_or_alias: int | str, changes: wire.TemplateRequest) -> wire.TemplateSummary:
        """Change the fields set in `changes`; the rest stays."""
        return await self._http.run(edit_call(id_or_alias, changes))

    async def delete(self, id_or_alias: int | str) -> None:
        await self._http.run(delete_call(id_or_alias))

    async def validate(self, request: wire.TemplateValidationRequest) -> wire.TemplateValidationResponse:
        """Check template content without saving it, and render it with `test_render_model`."""
        return await self._http.run(validate_call(request))


class SyncTemplates(SyncResource):
    """`client.templates` of the sync `ServerClient`."""

    def list(
        self,
        count: int = 100,
        offset: int = 0,
        *,
        template_type: str | None = None,
        layout_template: str | None = None,
    ) -> wire.TemplateList:
        """One page of templates; `template_type` is All, Standard or Layout, `layout_template` keeps the
        templates that use that layout (by alias)."""
        return self._http.run(list_call(count, offset, template_type, layout_template))

    def get(self, id_or_alias: int | str) -> wire.Template:
        """A template with its bodies, by TemplateId (an int) or alias (a string)."""
        return self._http.run(get_call(id_or_alias))

    def create(self, template: wire.TemplateRequest) -> wire.TemplateSummary:
        """A new template: `name`, and a `subject` and a body for a Standard one (Mustachio syntax)."""
        return self._http.run(create_call(template))

    def edit(self, id_or_alias: int | str, changes: wire.TemplateRequest) -> wire.TemplateSummary:
        """Change the fields set in `changes`; the rest stays."""
        return self._http.run(edit_call(id_or_alias, changes))

    def delete(self, id_or_alias: int | str) -> None:
        self._http.run(delete_call(id_or_alias))

    def validate(self, request: wire.TemplateValidationRequest) -> wire.TemplateValidationResponse:
        """Check template content without saving it, and render it with `test_render_model`."""
        return self._http.run(validate_call(request))


class AsyncAccountTemplates(AsyncResource):
    """`client.templates` of the async `AccountClient`."""

    async def push(
        self, source_server_id: int, destination_server_id: int, *, perform_changes: bool = True
    ) -> wire.TemplatePushResponse:
        """Copy every template with an alias from one server to another, matched by alias: new ones are
        created, changed ones edited. `perform_changes=False` only reports what a push would do."""
        return await self._http.run(push_call(source_server_id, destination_server_id, perform_changes=perform_changes))


class SyncAccountTemplates(SyncResource):
    """`client.templates` of the sync `AccountClient`."""

    def push(
        self, source_server_id: int, destination_server_id: int, *, perform_changes: bool = True
    ) -> wire.TemplatePushResponse:
        """Copy every template with an alias from one server to another, matched by alias: new ones are
        created, changed ones edited. `perform_changes=False` only reports what a push would do."""
        return self._http.run(push_call(source_server_id, destination_server_id, perform_changes=perform_changes))
