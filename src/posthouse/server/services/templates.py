"""Templates: Postmark's template management, test-rendering, push between servers, and mail rendered from them.

Sending with a template renders Subject, HtmlBody and TextBody from the stored template (inside its layout, if it
names one), inlines CSS after rendering, and hands an ordinary `EmailRequest` to `SendingService`, the one entry
point for mail. In a batch each message is rendered on its own: one that cannot be rendered becomes that item's
error result, and the others are sent (docs/postmark-api.md §2.4).

Error codes are Postmark's template codes (docs/postmark-api.md §1.3). Where the reference names a code but not the
exact case, the choice is written next to the check.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Final

from posthouse import wire
from posthouse.server.domain.inlining import inline_css
from posthouse.server.domain.messages import MAX_BODY, MAX_SUBJECT
from posthouse.server.domain.templates import (
    CONTENT_PLACEHOLDER,
    MAX_DEPTH,
    TemplateError,
    TemplateRenderError,
    TemplateSyntaxError,
    compile_cached,
    render_with_layout,
    suggest_model,
    validate_layout,
)
from posthouse.server.errors import ApiError, NotFoundError, StoreError
from posthouse.server.services.accounts import AccountService, Server
from posthouse.server.services.clock import Clock
from posthouse.server.services.history import check_paging
from posthouse.server.services.sending import MAX_BATCH, NIL_MESSAGE_ID, SendingService
from posthouse.server.store.base import Stmt, Store
from posthouse.server.store.idempotency import IdempotencyKey, finish_stmt
from posthouse.server.store.templates import TemplateRecord

STANDARD: Final = "Standard"
LAYOUT: Final = "Layout"
MAX_TEMPLATES: Final = 100  # per server (docs/postmark-api.md §3.2, ErrorCode 1105)
MAX_PUSH: Final = 100  # templates per push (Postmark's templates FAQ, ErrorCode 1124)
# Postmark publishes no length limits for these two; generous ones keep rows bounded (ErrorCode 1121).
MAX_NAME: Final = 255
MAX_ALIAS: Final = 255
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")  # starts with a letter; letters, digits, `.`, `-`, `_` (§3.2)
_TEMPLATE_ID = re.compile(r"[0-9]{1,18}")  # an id in the path; longer digit strings cannot be a stored id
# TemplateModel keys the engine gives a meaning of its own: `@content` is the layout placeholder and `pm:…` are
# Postmark's placeholders (`{{{ pm:unsubscribe }}}`). Which keys Postmark reserves is not documented (ErrorCode
# 1122 "reserved top-level TemplateModel key"); these are the ones a model could otherwise be confused with.
_RESERVED_PREFIXES: Final = ("@", "pm:")
_CONTENT_TAG = re.compile(r"\{\{(?:\{\s*@content\s*\}\}\}|&\s*@content\s*\}\})")
_TEST_BODY = "(rendered from a template)"
# Postmark's words for ErrorCode 1101, which clients match: postmarker's recorded exchange answers templates.get(123)
# with the first; the Alias one is what Postmark says for an unknown TemplateAlias; postmark.js's cleanup treats
# a 1101 whose message says "not valid" and "not found" as already gone. The layout one follows the same pattern.
_TEMPLATE_ID_NOT_FOUND: Final = "The 'TemplateId' associated with this request is not valid or was not found."
_ALIAS_NOT_FOUND: Final = "The Template's 'Alias' associated with this request is not valid or was not found."
_LAYOUT_NOT_FOUND: Final = "The 'LayoutTemplate' associated with this request is not valid or was not found."

_TemplateCache = dict[tuple[str, Any], TemplateRecord | None]


def _template_type(value: str | None) -> str:
    if not value:
        return STANDARD
    for known in (STANDARD, LAYOUT):
        if value.strip().lower() == known.lower():
            return known
    raise ApiError(1122, f"Invalid 'TemplateType': '{value}'. Use Standard or Layout.")


def _name(value: str | None) -> str:
    name = (value or "").strip()
    if not name:
        raise ApiError(1120, "The 'Name' field is required.")
    if len(name) > MAX_NAME:
        raise ApiError(1121, f"The 'Name' can be at most {MAX_NAME} characters.")
    return name


def _alias(value: str) -> str:
    alias = value.strip()
    if not alias:
        raise ApiError(1122, "The 'Alias' cannot be empty: leave it out for a template without an alias.")
    if len(alias) > MAX_ALIAS:
        raise ApiError(1121, f"The 'Alias' can be at most {MAX_ALIAS} characters.")
    if not _ALIAS.fullmatch(alias):
        raise ApiError(
            1122,
            f"Invalid 'Alias': '{alias}'. An alias starts with a letter and contains only "
            "letters, digits, '.', '-' and '_'.",
        )
    return alias


def _position(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _placeholder_errors(source: str, label: str) -> list[TemplateError]:
    """`{{{ @content }}}` outside a layout body: where each one is."""
    return [
        TemplateError(
            f"The layout content placeholder ('{CONTENT_PLACEHOLDER}') cannot be present in the '{label}' of a "
            "Standard template: it belongs in a layout's body.",
            *_position(source, match.start()),
        )
        for match in _CONTENT_TAG.finditer(source)
    ]


def _check_source(label: str, source: str | None, template_type: str) -> None:
    """Refuse a template part that cannot be compiled (1122) or misplaces the layout placeholder (1131, 1122)."""
    if not source:
        return
    try:
        compiled = compile_cached(source)
    except TemplateSyntaxError as exc:
        raise ApiError(1122, f"The '{label}' could not be parsed: {exc}.") from None
    # Postmark's 1131 covers both rules (its error codes page: "The layout content placeholder must be present
    # in the layout HTML and/or Text body exactly once … cannot be present in a standard template"); postmark.js's
    # own layout test matches the opening words.
    if template_type == LAYOUT and label != "Subject":
        if compiled.content_slots != 1:
            raise ApiError(
                1131,
                f"The layout content placeholder must be present exactly once in the '{label}' of a layout "
                f"('{CONTENT_PLACEHOLDER}'); it is there {compiled.content_slots} times.",
            )
    elif compiled.content_slots:
        raise ApiError(
            1131, f"The layout content placeholder ('{CONTENT_PLACEHOLDER}') cannot be present in the '{label}' "
            "of a Standard template: it belongs in a layout's body.",
        )


def _check_content(template_type: str, subject: str | None, html: str | None, text: str | None) -> None:
    if subject is not None and len(subject) > MAX_SUBJECT:
        raise ApiError(1121, f"The 'Subject' can be at most {MAX_SUBJECT} characters.")
    for label, body in (("HtmlBody", html), ("TextBody", text)):
        if body is not None and len(body) > MAX_BODY:
            raise ApiError(1121, f"The '{label}' can be at most 5 MB.")
    _check_source("Subject", subject, template_type)
    _check_source("HtmlBody", html, template_type)
    _check_source("TextBody", text, template_type)


def _is_empty(request: wire.TemplateRequest | None) -> bool:
    return request is None or all(getattr(request, name) is None for name in request.__struct_fields__)


def _merge(suggested: Any, given: Any, depth: int = 0) -> Any:
    """The test model laid over the suggested one: objects merge key by key, any other given value wins."""
    if not (isinstance(suggested, dict) and isinstance(given, dict)) or depth > MAX_DEPTH:
        return given
    merged = dict(suggested)
    for key, value in given.items():
        merged[key] = _merge(suggested[key], value, depth + 1) if key in suggested else value
    return merged


def _summary(record: TemplateRecord) -> wire.TemplateSummary:
    return wire.TemplateSummary(
        template_id=record.id,
        name=record.name,
        active=record.active,
        alias=record.alias,
        template_type=record.template_type,
        layout_template=record.layout_template,
    )


def _details(record: TemplateRecord) -> wire.Template:
    return wire.Template(
        template_id=record.id,
        name=record.name,
        subject=record.subject,
        html_body=record.html_body,
        text_body=record.text_body,
        associated_server_id=record.server_id,
        active=record.active,
        alias=record.alias,
        template_type=record.template_type,
        layout_template=record.layout_template,
    )


def _envelope(request: wire.TemplateEmailRequest) -> wire.EmailRequest:
    """The send request's own fields (From, To, …), without the template ones."""
    return wire.EmailRequest(**{name: getattr(request, name) for name in wire.EmailRequest.__struct_fields__})


def _template_id(value: int | str | None) -> int | None:
    if value is None or value == "":
        return None
    number = value if isinstance(value, int) else int(value) if _TEMPLATE_ID.fullmatch(value.strip()) else None
    # Ids are positive 64-bit integers: anything else names no template (and must not reach the database).
    if number is not None and 0 < number < 2**63:
        return number
    raise ApiError(1101, _TEMPLATE_ID_NOT_FOUND)


def _same_content(a: TemplateRecord, b: TemplateRecord) -> bool:
    return (a.name, a.subject, a.html_body, a.text_body, (a.layout_template or "").lower()) == (
        b.name,
        b.subject,
        b.html_body,
        b.text_body,
        (b.layout_template or "").lower(),
    )


def _render_part(content: str | None, layout: str | None, model: dict[str, Any], *, escape: bool) -> str | None:
    """One body rendered from `model`, inside the layout's body when the layout has one."""
    if not content:
        return None
    compiled = compile_cached(content)
    if layout:
        return render_with_layout(compile_cached(layout), compiled, model, escape_html=escape, max_output=MAX_BODY)
    return compiled.render(model, escape_html=escape, max_output=MAX_BODY)


class TemplateService:
    def __init__(self, store: Store, accounts: AccountService, sending: SendingService, clock: Clock) -> None:
        self.store = store
        self.accounts = accounts
        self.sending = sending
        self.clock = clock

    # -- lookups ------------------------------------------------------------------------------

    async def _find(self, server_id: int, id_or_alias: str, *, deleted: bool = False) -> TemplateRecord:
        """A template by numeric id or by alias (aliases start with a letter, so the two never collide)."""
        value = id_or_alias.strip()
        if _TEMPLATE_ID.fullmatch(value):
            record = await self.store.get_template(server_id, int(value)) if int(value) < 2**63 else None
            if record is not None and not record.active and not deleted:
                record = None
        else:
            record = await self.store.find_template(server_id, value)
        if record is None:
            raise NotFoundError(1101, _TEMPLATE_ID_NOT_FOUND if _TEMPLATE_ID.fullmatch(value) else _ALIAS_NOT_FOUND)
        return record

    async def _layout(self, server_id: int, alias: str) -> TemplateRecord:
        """The Layout a Standard template names in `LayoutTemplate`."""
        record = await self.store.find_template(server_id, alias.strip())
        if record is None:
            raise ApiError(1101, _LAYOUT_NOT_FOUND)
        if record.template_type != LAYOUT:
            raise ApiError(
                1122, f"Invalid 'LayoutTemplate': the template '{alias}' is a Standard template, not a layout."
            )
        return record

    async def _check_alias_free(self, server_id: int, alias: str, own_id: int | None) -> None:
        other = await self.store.find_template(server_id, alias)
        if other is not None and other.id != own_id:
            raise ApiError(1122, f"The alias '{alias}' is already used by template {other.id} on this server.")

    # -- management (docs/postmark-api.md §3.1) ----------------------------------------------------

    async def list_templates(
        self, server_id: int, count: int | None, offset: int | None, template_type: str | None, layout: str | None
    ) -> wire.TemplateList:
        count, offset = check_paging(count, offset, 1100)
        kinds = {"all": None, "standard": STANDARD, "layout": LAYOUT}
        wanted = (template_type or "All").strip().lower()
        if wanted not in kinds:
            raise ApiError(1100, f"Invalid 'TemplateType': '{template_type}'. Use All, Standard or Layout.")
        total, records = await self.store.list_templates(
            server_id, offset, count, template_type=kinds[wanted], layout=layout
        )
        return wire.TemplateList(total_count=total, templates=[_summary(r) for r in records])

    async def get(self, server_id: int, id_or_alias: str) -> wire.Template:
        # A deleted template still reads back by id, with Active false (docs/postmark-api.md §3.1).
        return _details(await self._find(server_id, id_or_alias, deleted=True))

    async def create(self, server_id: int, request: wire.TemplateRequest | None) -> wire.TemplateSummary:
        if request is None or _is_empty(request):
            raise ApiError(1109, "The request contains no template data.")
        template_type = _template_type(request.template_type)
        name = _name(request.name)
        alias = _alias(request.alias) if request.alias is not None else None
        subject = request.subject
        html = request.html_body or None
        text = request.text_body or None
        if template_type == LAYOUT:
            if subject:
                raise ApiError(1123, "A layout has no 'Subject': leave it out.")
            if request.layout_template:
                raise ApiError(1123, "A layout cannot have a 'LayoutTemplate' of its own.")
            subject = None
        elif not subject:
            raise ApiError(1120, "The 'Subject' field is required.")
        if not html and not text:
            raise ApiError(1120, "Provide either 'HtmlBody' or 'TextBody' or both.")
        _check_content(template_type, subject, html, text)
        layout = None
        if template_type == STANDARD and request.layout_template:
            layout = (await self._layout(server_id, request.layout_template)).alias
        if alias is not None:
            await self._check_alias_free(server_id, alias, None)
        if await self.store.count_templates(server_id) >= MAX_TEMPLATES:
            raise ApiError(1105, f"A server can have at most {MAX_TEMPLATES} templates.")
        now = self.clock.micros()
        record = TemplateRecord(0, server_id, alias, name, subject, html, text, template_type, layout, True, now, now)
        try:
            record.id = await self.store.create_template(record)
        except StoreError:
            await self._explain_alias_conflict(server_id, alias, None)
            raise
        return _summary(record)

    async def edit(
        self, server_id: int, id_or_alias: str, request: wire.TemplateRequest | None
    ) -> wire.TemplateSummary:
        if request is None or _is_empty(request):
            raise ApiError(1109, "The request contains no template data.")
        record = await self._find(server_id, id_or_alias)
        if request.template_type and _template_type(request.template_type) != record.template_type:
            # TemplateType is set at creation only (docs/postmark-api.md §3.2), so a layout is never turned Standard.
            raise ApiError(1123, "'TemplateType' cannot be changed after a template is created.")
        previous_alias = record.alias
        if request.name is not None:
            record.name = _name(request.name)
        if request.alias is not None:
            record.alias = _alias(request.alias)
            if previous_alias is None or record.alias.lower() != previous_alias.lower():
                await self._check_alias_free(server_id, record.alias, record.id)
        if request.html_body is not None:
            record.html_body = request.html_body or None
        if request.text_body is not None:
            record.text_body = request.text_body or None
        if record.template_type == LAYOUT:
            if request.subject:
                raise ApiError(1123, "A layout has no 'Subject': leave it out.")
            if request.layout_template:
                raise ApiError(1123, "A layout cannot have a 'LayoutTemplate' of its own.")
        else:
            if request.subject is not None:
                record.subject = request.subject
            if not record.subject:
                raise ApiError(1120, "The 'Subject' field is required.")
            if request.layout_template is not None:
                # `""` removes the layout (docs/postmark-api.md §3.2).
                layout = request.layout_template.strip()
                record.layout_template = (await self._layout(server_id, layout)).alias if layout else None
        if not record.html_body and not record.text_body:
            raise ApiError(1120, "Provide either 'HtmlBody' or 'TextBody' or both.")
        _check_content(record.template_type, record.subject, record.html_body, record.text_body)
        # Standard templates name their layout by alias: renaming a layout renames it in them too.
        renamed = previous_alias if record.template_type == LAYOUT and previous_alias != record.alias else None
        record.updated_at = self.clock.micros()
        try:
            await self.store.update_template(record, renamed_layout=renamed)
        except StoreError:
            await self._explain_alias_conflict(server_id, record.alias, record.id)
            raise
        return _summary(record)

    async def _explain_alias_conflict(self, server_id: int, alias: str | None, own_id: int | None) -> None:
        """After a failed write: if another request took the alias in the meantime (the unique index refused
        this one), say so as Postmark would; otherwise the store error stands."""
        if alias is not None:
            await self._check_alias_free(server_id, alias, own_id)

    async def delete(self, server_id: int, id_or_alias: str) -> wire.ErrorResponse:
        record = await self._find(server_id, id_or_alias)
        if record.template_type == LAYOUT and record.alias:
            users = await self.store.count_layout_users(server_id, record.alias)
            if users:
                raise ApiError(
                    1130,
                    f"The layout '{record.alias}' is used by {users} template(s) and cannot be "
                    "deleted; move them to another layout first.",
                )
        await self.store.deactivate_template(server_id, record.id, self.clock.micros())
        return wire.ErrorResponse(error_code=0, message=f"Template {record.id} removed.")

    # -- test-rendering (docs/postmark-api.md §3.2, validate) --------------------------------------

    async def validate(
        self, server_id: int, request: wire.TemplateValidationRequest | None
    ) -> wire.TemplateValidationResponse:
        if request is None or (request.subject is None and request.html_body is None and request.text_body is None):
            raise ApiError(
                1109, "The request contains no template content to validate: send 'Subject', 'HtmlBody' or 'TextBody'."
            )
        template_type = _template_type(request.template_type)
        layout: TemplateRecord | None = None
        if template_type == LAYOUT:
            if request.subject:
                raise ApiError(1123, "A layout has no 'Subject': leave it out.")
            if request.layout_template:
                raise ApiError(1123, "A layout cannot have a 'LayoutTemplate' of its own.")
        elif request.layout_template:
            layout = await self._layout(server_id, request.layout_template)
        given = request.test_render_model
        if given is not None and not isinstance(given, dict):
            raise ApiError(1122, "The 'TestRenderModel' must be a JSON object.")
        sources = [request.subject, request.html_body, request.text_body]
        if layout is not None:
            sources += [layout.html_body, layout.text_body]
        model = _merge(suggest_model(*(s for s in sources if s)), given or {})
        inline = request.inline_css_for_html_test_render is not False
        subject = self._validate_part("Subject", request.subject, STANDARD, None, model, escape=False)
        html = self._validate_part(
            "HtmlBody",
            request.html_body,
            template_type,
            layout.html_body if layout else None,
            model,
            escape=True,
            inline=inline,
        )
        text = self._validate_part(
            "TextBody", request.text_body, template_type, layout.text_body if layout else None, model, escape=False
        )
        parts = [p for p in (subject, html, text) if p is not None]
        return wire.TemplateValidationResponse(
            all_content_is_valid=all(p.content_is_valid for p in parts),
            html_body=html,
            text_body=text,
            subject=subject,
            suggested_template_model=model,
        )

    @staticmethod
    def _validate_part(
        label: str,
        source: str | None,
        template_type: str,
        layout: str | None,
        model: dict[str, Any],
        *,
        escape: bool,
        inline: bool = False,
    ) -> wire.TemplateContentValidation | None:
        if source is None:
            return None
        if template_type == LAYOUT:
            errors = validate_layout(source)
        else:
            try:
                compile_cached(source)
                errors = []
            except TemplateSyntaxError as exc:
                errors = list(exc.errors)
            errors = sorted(errors + _placeholder_errors(source, label), key=lambda e: (e.line, e.character))
        if errors:
            return wire.TemplateContentValidation(
                content_is_valid=False,
                rendered_content=None,
                validation_errors=[
                    wire.TemplateValidationError(message=e.message, line=e.line, character_position=e.character)
                    for e in errors
                ],
            )
        try:
            compiled = compile_cached(source)
            if template_type == LAYOUT:
                # A layout on its own renders with empty content where `{{{ @content }}}` stands.
                rendered = render_with_layout(
                    compiled, compile_cached(""), model, escape_html=escape, max_output=MAX_BODY
                )
            elif layout:
                rendered = render_with_layout(
                    compile_cached(layout), compiled, model, escape_html=escape, max_output=MAX_BODY
                )
            else:
                rendered = compiled.render(model, escape_html=escape, max_output=MAX_BODY)
        except TemplateRenderError as exc:
            # The content parses; this model cannot fill it (e.g. `each` over an object). No position to give.
            return wire.TemplateContentValidation(
                content_is_valid=False,
                rendered_content=None,
                validation_errors=[
                    wire.TemplateValidationError(message=exc.message, line=None, character_position=None)
                ],
            )
        return wire.TemplateContentValidation(
            content_is_valid=True, validation_errors=[], rendered_content=inline_css(rendered) if inline else rendered
        )

    # -- push between servers (docs/postmark-api.md §3.2, push) ------------------------------------

    async def _push_server(self, value: int | str | None) -> int | None:
        """The server an id names, or None when it names none (absent, not a positive integer, unknown)."""
        number = value if isinstance(value, int) else int(value) if value and _TEMPLATE_ID.fullmatch(value) else None
        if number is None or not 0 < number < 2**63:
            return None
        try:
            await self.accounts.get_server(number)
        except NotFoundError:
            return None
        return number

    async def push(self, request: wire.TemplatePushRequest | None) -> wire.TemplatePushResponse:
        """Copy every template with an alias from one server to another, matched by alias: new ones are created,
        changed ones edited, identical ones left alone. `PerformChanges` false (or absent) only reports."""
        request = request or wire.TemplatePushRequest()
        source_id = await self._push_server(request.source_server_id)
        destination_id = await self._push_server(request.destination_server_id)
        # Postmark's words, which postmark.js's own push tests expect exactly.
        if source_id is None and destination_id is None:
            raise ApiError(601, "The source and destination servers were not found.")
        if source_id is None:
            raise ApiError(601, "The source server was not found.")
        if destination_id is None:
            raise ApiError(601, "The destination server was not found.")
        source = [t for t in await self.store.active_templates(source_id) if t.alias]
        if not source:
            # Templates without an alias are never pushed (docs/postmark-api.md §3.2).
            raise ApiError(1124, f"Server {source_id} has no templates with an alias: there is nothing to push.")
        if len(source) > MAX_PUSH:
            raise ApiError(
                1124, f"At most {MAX_PUSH} templates can be pushed at once; server {source_id} has {len(source)}."
            )
        # Layouts first, so the Standard templates that name them never point at a layout not yet there.
        source.sort(key=lambda t: (t.template_type != LAYOUT, t.id))
        existing = await self.store.active_templates(destination_id)
        by_alias = {t.alias.lower(): t for t in existing if t.alias}
        now = self.clock.micros()
        creates: list[TemplateRecord] = []
        edits: list[TemplateRecord] = []
        pushed: list[tuple[str, TemplateRecord, TemplateRecord | None]] = []
        for template in source:
            assert template.alias is not None
            target = by_alias.get(template.alias.lower())
            if target is None:
                creates.append(
                    dataclasses.replace(template, id=0, server_id=destination_id, created_at=now, updated_at=now)
                )
                pushed.append(("Create", template, None))
                continue
            if target.template_type != template.template_type:
                raise ApiError(
                    1125,
                    f"The template '{template.alias}' is a {template.template_type} template on "
                    f"server {source_id} but a {target.template_type} template on server "
                    f"{destination_id}: templates of different types cannot be pushed over each "
                    "other.",
                )
            if _same_content(template, target):
                continue
            edits.append(
                dataclasses.replace(
                    target,
                    name=template.name,
                    subject=template.subject,
                    html_body=template.html_body,
                    text_body=template.text_body,
                    layout_template=template.layout_template,
                    updated_at=now,
                )
            )
            pushed.append(("Edit", template, target))
        if len(existing) + len(creates) > MAX_TEMPLATES:
            raise ApiError(
                1105, f"The push would leave server {destination_id} with more than {MAX_TEMPLATES} templates."
            )
        new_ids: list[int] = []
        if request.perform_changes and (creates or edits):
            new_ids = await self.store.push_templates(creates, edits)
        created = iter(new_ids)
        answer = []
        for action, template, target in pushed:
            template_id = target.id if target is not None else next(created, None)
            answer.append(
                wire.PushedTemplate(
                    action=action,
                    template_id=template_id,
                    alias=template.alias or "",
                    name=template.name,
                    template_type=template.template_type,
                )
            )
        return wire.TemplatePushResponse(total_count=len(answer), templates=answer)

    # -- sending (docs/postmark-api.md §2.3, §2.4) -------------------------------------------------

    async def send(self, server: Server | None, request: wire.TemplateEmailRequest, *,
                   idempotency: IdempotencyKey | None = None) -> wire.SendResponse:
        """`POST /email/withTemplate`: raises ApiError when refused; `server=None` is the test token."""
        return await self.sending.send(server, await self._render(server, request, {}), idempotency=idempotency)

    async def render_request(self, server: Server, request: wire.TemplateEmailRequest,
                             cache: dict[Any, Any]) -> wire.EmailRequest:
        """A template send rendered into a plain send request (bulk sending renders its messages here)."""
        return await self._render(server, request, cache)

    async def send_batch(
        self, server: Server | None, requests: Sequence[wire.TemplateEmailRequest], *,
        idempotency: IdempotencyKey | None = None,
    ) -> list[wire.SendResponse]:
        """`POST /email/batchWithTemplates`: per-item results in request order. Items that cannot be rendered get
        their error here; the rest go to `SendingService.send_batch` together (one commit)."""
        if len(requests) > MAX_BATCH:
            raise ApiError(410, f"You may only send up to {MAX_BATCH} messages in a single batched request.")
        cache: _TemplateCache = {}
        rendered: list[wire.EmailRequest] = []
        results: list[wire.SendResponse | None] = []
        for request in requests:
            try:
                rendered.append(await self._render(server, request, cache))
            except ApiError as exc:
                # The shape of SendingService's failed items: every key postmark-python requires (§2.2 compat).
                results.append(
                    wire.SendResponse(
                        to=request.to or "",
                        submitted_at=self.clock.now().isoformat(),
                        message_id=NIL_MESSAGE_ID,
                        error_code=exc.error_code,
                        message=exc.message,
                    )
                )
                continue
            results.append(None)
        if not rendered:
            out = [r for r in results if r is not None]
            if idempotency is not None:
                await self.sending.idempotency.finish(idempotency, 200, wire.encoder.encode(out))
            return out
        # The merged answer is the one to record for an idempotency key, so it is built before the commit.
        def merged(sent: list[wire.SendResponse]) -> list[wire.SendResponse]:
            it = iter(sent)
            return [result if result is not None else next(it) for result in results]

        answer: list[wire.SendResponse] = []

        def record(sent: list[wire.SendResponse]) -> list[Stmt]:
            answer.extend(merged(sent))
            return finish_stmt(idempotency, 200, wire.encoder.encode(answer)) if idempotency is not None else []

        sent = await self.sending.send_batch(server, rendered, commit_with=record)
        return answer if answer else merged(sent)

    async def _render(
        self, server: Server | None, request: wire.TemplateEmailRequest, cache: _TemplateCache
    ) -> wire.EmailRequest:
        """The send request with Subject, HtmlBody and TextBody rendered from its template."""
        template_id = _template_id(request.template_id)
        alias = (request.template_alias or "").strip() or None
        if template_id is None and alias is None:
            raise ApiError(1101, "A 'TemplateId' or a 'TemplateAlias' is required to send with a template.")
        if request.subject or request.html_body or request.text_body:
            raise ApiError(
                1123,
                "'Subject', 'HtmlBody' and 'TextBody' come from the template: leave them out "
                "when sending with a template.",
            )
        model = request.template_model
        if model is None:
            raise ApiError(1120, "The 'TemplateModel' field is required.")
        if not isinstance(model, dict):
            raise ApiError(1122, "The 'TemplateModel' must be a JSON object.")
        reserved = next((key for key in model if key.startswith(_RESERVED_PREFIXES)), None)
        if reserved is not None:
            raise ApiError(1122, f"The 'TemplateModel' cannot use the reserved key '{reserved}'.")
        email = _envelope(request)
        if server is None:
            # The test token belongs to no server, so there is no template to read: the envelope is validated
            # with a stand-in body, and nothing is stored.
            email.text_body = _TEST_BODY
            return email
        template = await self._sending_template(server.id, template_id, alias, cache)
        layout = await self._sending_layout(server.id, template, cache) if template.layout_template else None
        try:
            email.subject = compile_cached(template.subject or "").render(model, escape_html=False, max_output=MAX_BODY)
            email.html_body = _render_part(template.html_body, layout.html_body if layout else None, model, escape=True)
            email.text_body = _render_part(
                template.text_body, layout.text_body if layout else None, model, escape=False
            )
        except TemplateSyntaxError as exc:  # stored templates compile; only an engine change could get here
            raise ApiError(1122, f"Template {template.id} could not be parsed: {exc}.") from None
        except TemplateRenderError as exc:
            raise ApiError(
                1122, f"Template {template.id} could not be rendered with this 'TemplateModel': {exc.message}"
            ) from None
        if email.html_body is not None and request.inline_css is not False:
            # After rendering, never before (docs/architecture.md §6a);
            # InlineCss defaults to true (docs/postmark-api.md §2.3).
            email.html_body = inline_css(email.html_body)
        return email

    async def _sending_template(
        self, server_id: int, template_id: int | None, alias: str | None, cache: _TemplateCache
    ) -> TemplateRecord:
        """The Standard template a message names (TemplateId wins over TemplateAlias); a Layout cannot be sent."""
        if template_id is not None:
            key: tuple[str, Any] = ("id", template_id)
            if key not in cache:
                cache[key] = await self.store.get_template(server_id, template_id) if template_id < 2**63 else None
            record = cache[key]
            if record is None or not record.active or record.template_type != STANDARD:
                raise ApiError(1101, _TEMPLATE_ID_NOT_FOUND)
            return record
        assert alias is not None
        key = ("alias", alias.lower())
        if key not in cache:
            cache[key] = await self.store.find_template(server_id, alias)
        record = cache[key]
        if record is None or record.template_type != STANDARD:
            raise ApiError(1101, _ALIAS_NOT_FOUND)
        return record

    async def _sending_layout(self, server_id: int, template: TemplateRecord, cache: _TemplateCache) -> TemplateRecord:
        assert template.layout_template is not None
        key = ("alias", template.layout_template.lower())
        if key not in cache:
            cache[key] = await self.store.find_template(server_id, template.layout_template)
        layout = cache[key]
        if layout is None or layout.template_type != LAYOUT:
            raise ApiError(1101, _LAYOUT_NOT_FOUND)
        return layout
