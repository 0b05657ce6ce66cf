"""Templates and layouts (docs/postmark-api.md §3): the list, the editor with a live preview, and delete.

The editor is one form: Name, Alias, Subject, HtmlBody, TextBody, LayoutTemplate and (when creating)
TemplateType, plus a test model (JSON) that is never saved. Its preview is what `POST /templates/validate`
answers (`TemplateService.validate`): each part's syntax errors with their line and column, or the part rendered
from the test model. htmx posts the form to `…/templates/preview` as the operator types and swaps the answer in
beside the form; without JavaScript the "Preview" button posts the same form and gets the whole page back.

The rendered HTML is never part of the page: like a message's HTML (routes/messages.py), it is shown in a
frame with `sandbox=""` whose document comes from its own response (`…/preview/html`, posted into the frame
by the form's "Show the HTML" button, which manage.js presses after each preview), carrying a policy without
scripts or remote loads. A frame filled from the page itself (`srcdoc`) would inherit the page's policy,
which forbids the inline styles email HTML is made of.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from posthouse import wire
from posthouse.server.dashboard.rendering import is_htmx, render
from posthouse.server.dashboard.routes.manage import field as form_field
from posthouse.server.dashboard.routes.manage import notice, see_other, server_page
from posthouse.server.dashboard.routes.messages import FRAME_POLICY
from posthouse.server.dashboard.routes.scope import server_of
from posthouse.server.dashboard.sessions import state_of
from posthouse.server.errors import ApiError, NotFoundError

LAYOUTS_LISTED = 100  # a server has at most 100 templates (services/templates.py MAX_TEMPLATES)
_TYPES = ("Standard", "Layout")
_EMPTY_FRAME = ("<!doctype html><p style=\"font-family:sans-serif;color:#555\">{}</p>")


@dataclass(slots=True)
class Draft:
    """The editor's fields: a stored template's, or what the operator posted."""

    template_id: int | None = None
    name: str = ""
    alias: str = ""
    subject: str = ""
    html_body: str = ""
    text_body: str = ""
    template_type: str = "Standard"
    layout_template: str = ""
    test_model: str = "{}"
    active: bool = True

    @property
    def is_layout(self) -> bool:
        return self.template_type == "Layout"


@dataclass(slots=True)
class Preview:
    """What the preview shows: a model error, a refusal of the whole request, or each part's validation."""

    model_error: str | None = None
    error: str | None = None
    result: wire.TemplateValidationResponse | None = None
    parts: list[tuple[str, str, Any]] = field(default_factory=list)  # (label, field id, TemplateContentValidation)


def _base(server_id: int) -> str:
    return f"/ui/servers/{server_id}/templates"


def _draft_of(request: Request, template_id: int | None, template_type: str | None = None) -> Draft:
    kind = template_type or form_field(request, "template_type")
    return Draft(
        template_id=template_id, name=form_field(request, "name"), alias=form_field(request, "alias"),
        subject=form_field(request, "subject"), html_body=form_field(request, "html_body", multiline=True),
        text_body=form_field(request, "text_body", multiline=True),
        template_type=kind if kind in _TYPES else "Standard", layout_template=form_field(request, "layout_template"),
        test_model=form_field(request, "test_model", multiline=True) or "{}")


def _draft_from(template: wire.Template) -> Draft:
    return Draft(template_id=template.template_id, name=template.name, alias=template.alias or "",
                 subject=template.subject or "", html_body=template.html_body or "",
                 text_body=template.text_body or "", template_type=template.template_type,
                 layout_template=template.layout_template or "", active=template.active)


def _model(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The test model, or why it cannot be one."""
    try:
        model = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        return None, f"The test model is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
    if not isinstance(model, dict):
        return None, "The test model must be a JSON object ({ … }), not a list or a single value."
    return model, None


async def _preview(request: Request, server_id: int, draft: Draft) -> Preview:
    """`POST /templates/validate` for the draft, with its test model."""
    model, model_error = _model(draft.test_model)
    if model is None:
        return Preview(model_error=model_error)
    try:
        result = await state_of(request).templates.validate(server_id, wire.TemplateValidationRequest(
            subject=None if draft.is_layout else draft.subject, html_body=draft.html_body or None,
            text_body=draft.text_body or None, test_render_model=model, template_type=draft.template_type,
            layout_template=(draft.layout_template or None) if not draft.is_layout else None))
    except ApiError as exc:
        return Preview(error=exc.message)
    parts = [(label, ident, part) for label, ident, part in (
        ("Subject", "t-subject", result.subject), ("HTML body", "t-html", result.html_body),
        ("Text body", "t-text", result.text_body)) if part is not None]
    return Preview(result=result, parts=parts)


async def _layouts(request: Request, server_id: int) -> list[wire.TemplateSummary]:
    listed = await state_of(request).templates.list_templates(server_id, LAYOUTS_LISTED, 0, "Layout", None)
    return listed.templates


async def _editor(request: Request, server: Any, draft: Draft, *, error: str | None = None, status: int = 200,
                  preview: Preview | None = None) -> Response:
    base = _base(server.id)
    context = {
        "draft": draft, "base": base, "error": error, "notice": notice(request),
        "preview": preview if preview is not None else await _preview(request, server.id, draft),
        "layouts": await _layouts(request, server.id), "types": _TYPES,
        "action": f"{base}/{draft.template_id}" if draft.template_id else f"{base}/new",
        "initial_frame": f"{base}/{draft.template_id}/html" if draft.template_id else None,
    }
    return render(request, "template_edit.html", {**await server_page(request, server, "templates"), **context},
                  status=status)


def _template_id(request: Request) -> int:
    text = str(request.path_params["template_id"])
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise NotFoundError(1101, f"There is no template {text!r}.", 404)
    return int(text)


async def template_list(request: Request) -> Response:
    server = await server_of(request)
    listed = await state_of(request).templates.list_templates(server.id, 100, 0, "All", None)
    return render(request, "templates.html", {
        **await server_page(request, server, "templates"), "templates": listed.templates,
        "total": listed.total_count, "base": _base(server.id), "notice": notice(request)})


async def template_new(request: Request) -> Response:
    server = await server_of(request)
    kind = request.query_params.get("type", "Standard")
    draft = Draft(template_type=kind if kind in _TYPES else "Standard")
    if draft.is_layout:
        draft.html_body, draft.text_body = "<html><body>\n{{{ @content }}}\n</body></html>", "{{{ @content }}}"
    return await _editor(request, server, draft)


async def template_create(request: Request) -> Response:
    server = await server_of(request)
    draft = _draft_of(request, None)
    try:
        created = await state_of(request).templates.create(server.id, wire.TemplateRequest(
            name=draft.name, alias=draft.alias.strip() or None,
            subject=None if draft.is_layout else draft.subject, html_body=draft.html_body, text_body=draft.text_body,
            template_type=draft.template_type,
            layout_template=(draft.layout_template or None) if not draft.is_layout else None))
    except ApiError as exc:
        return await _editor(request, server, draft, error=exc.message, status=400)
    return see_other(f"{_base(server.id)}/{created.template_id}", "created")


async def template_page(request: Request) -> Response:
    server = await server_of(request)
    template = await state_of(request).templates.get(server.id, str(_template_id(request)))
    if not template.active:
        raise NotFoundError(1101, f"Template {template.template_id} was deleted.", 404)
    draft = _draft_from(template)
    # The test model starts as the one the template suggests (every variable it uses, filled with its name).
    suggested = await _preview(request, server.id, draft)
    if suggested.result is not None:
        draft.test_model = json.dumps(suggested.result.suggested_template_model, indent=2, ensure_ascii=False)
    return await _editor(request, server, draft, preview=suggested)


async def template_save(request: Request) -> Response:
    server = await server_of(request)
    templates = state_of(request).templates
    current = await templates.get(server.id, str(_template_id(request)))
    draft = _draft_of(request, current.template_id, current.template_type)
    try:
        await templates.edit(server.id, str(current.template_id), wire.TemplateRequest(
            # A template without an alias keeps none while the field is left empty (an alias cannot be removed).
            name=draft.name, alias=draft.alias if current.alias is not None else draft.alias.strip() or None,
            subject=None if draft.is_layout else draft.subject, html_body=draft.html_body, text_body=draft.text_body,
            layout_template=None if draft.is_layout else draft.layout_template))
    except ApiError as exc:
        return await _editor(request, server, draft, error=exc.message, status=400)
    return see_other(f"{_base(server.id)}/{current.template_id}", "saved")


async def template_delete(request: Request) -> Response:
    server = await server_of(request)
    templates = state_of(request).templates
    template_id = _template_id(request)
    try:
        await templates.delete(server.id, str(template_id))
    except ApiError as exc:
        if isinstance(exc, NotFoundError):
            raise
        current = await templates.get(server.id, str(template_id))
        return await _editor(request, server, _draft_from(current), error=exc.message, status=400)
    return see_other(_base(server.id), "deleted")


async def template_preview(request: Request) -> Response:
    """The preview of the posted form: a part of the page for htmx, the whole editor page without it."""
    server = await server_of(request)
    template_id = form_field(request, "template_id")
    draft = _draft_of(request, int(template_id) if template_id.isdigit() and len(template_id) <= 18 else None)
    preview = await _preview(request, server.id, draft)
    if is_htmx(request):
        return render(request, "_template_preview.html", {"preview": preview, "draft": draft,
                                                          "base": _base(server.id)})
    return await _editor(request, server, draft, preview=preview)


def _frame(html: str) -> Response:
    return HTMLResponse(html, headers={"Content-Security-Policy": FRAME_POLICY, "X-Frame-Options": "SAMEORIGIN",
                                       "Referrer-Policy": "no-referrer"})


def _frame_of(preview: Preview) -> Response:
    if preview.model_error or preview.error:
        return _frame(_EMPTY_FRAME.format("Nothing to show: see the errors beside the form."))
    part = preview.result.html_body if preview.result is not None else None
    if part is None:
        return _frame(_EMPTY_FRAME.format("This template has no HTML body."))
    if not part.content_is_valid or part.rendered_content is None:
        return _frame(_EMPTY_FRAME.format("The HTML body has errors: see the list beside the form."))
    return _frame(part.rendered_content)


async def template_preview_html(request: Request) -> Response:
    """The posted draft's HTML, rendered from its test model, for the sandboxed preview frame."""
    server = await server_of(request)
    return _frame_of(await _preview(request, server.id, _draft_of(request, None)))


async def template_html(request: Request) -> Response:
    """A stored template's HTML rendered from its suggested model: what the frame shows before any edit."""
    server = await server_of(request)
    template = await state_of(request).templates.get(server.id, str(_template_id(request)))
    draft = _draft_from(template)
    suggested = await _preview(request, server.id, draft)
    if suggested.result is not None:
        draft.test_model = json.dumps(suggested.result.suggested_template_model)
    return _frame_of(await _preview(request, server.id, draft))


ROUTES = [
    Route("/ui/servers/{server_id}/templates", template_list, methods=["GET"]),
    Route("/ui/servers/{server_id}/templates/new", template_new, methods=["GET"]),
    Route("/ui/servers/{server_id}/templates/new", template_create, methods=["POST"]),
    Route("/ui/servers/{server_id}/templates/preview", template_preview, methods=["POST"]),
    Route("/ui/servers/{server_id}/templates/preview/html", template_preview_html, methods=["POST"]),
    Route("/ui/servers/{server_id}/templates/{template_id}", template_page, methods=["GET"]),
    Route("/ui/servers/{server_id}/templates/{template_id}", template_save, methods=["POST"]),
    Route("/ui/servers/{server_id}/templates/{template_id}/html", template_html, methods=["GET"]),
    Route("/ui/servers/{server_id}/templates/{template_id}/delete", template_delete, methods=["POST"]),
]
