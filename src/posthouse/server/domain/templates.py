"""Postmark's template language, Mustachio: parsing with positioned errors, compiled rendering, layouts, models.

The language, as Postmark's engine (github.com/ActiveCampaign/mustachio) implements it:

- `{{ path }}` HTML-escaped, `{{{ path }}}` and `{{& path }}` raw; whitespace inside the braces is allowed.
- A path is `name`, `a.b.c`, `.` (the current value), each optionally preceded by `../` steps.
- `{{#path}}…{{/path}}` renders once when the value is truthy, scoped to the value; `{{^path}}…{{/path}}` renders
  when it is falsy. Falsy, as Mustachio's `ContextObject.Exists()`: missing, null, false, 0, "", [] and {}.
- `{{#path}}A{{^path}}B{{/path}}` is Mustachio's if/else: opening a section with the path of the section that is
  open closes that one first (so Mustache's nested `{{#x}}{{#x}}…{{/x}}{{/x}}` is an error here, as in Postmark).
- `{{#each path}}…{{/each}}` iterates a list; a plain section over a list does not iterate (it is a
  conditional: Mustachio needs `each` for arrays). `each` over an object or a scalar fails the render, as in
  Mustachio ("used like an array by the template, but is a scalar value or object in your model").
- `{{! comment }}`. No partials, no set-delimiter tags, no lambdas.
- `{{{ @content }}}` marks where a layout takes its content (render_with_layout); `{{{ pm:unsubscribe }}}` is left
  in the output as written, for the sending pipeline to replace.
- Stricter than Mustachio, which leaves broken tags in the text: an unclosed `{{`, and `{{{` closed by `}}`, are
  syntax errors here, reported with the other errors.

Name resolution follows Mustachio's context chain. Every path segment, section and `each` item is a context whose
parent is the context it was resolved from, and `../` climbs one context (stopping at the root). So inside
`{{#each a.items}}` an item's parent is the list and the list's parent is `a`. A name is looked up in the
current object only — Mustache's walk up the whole context stack does not exist in Mustachio; `../` is how a
template reaches out. One leniency on top of Mustachio: a context whose value is not an object (a list, a
string, a number, true, or a missing value) cannot hold names, so a name looked up there is looked up in its
parent instead. That makes `{{#each items}}{{../company}}{{/each}}` (Postmark's documented example) and
`{{#flag}}{{name}}{{/flag}}` work, where Mustachio itself would print nothing. A tag that finds a value in
Mustachio finds the same value here; only tags that find nothing in Mustachio can render differently.

Whitespace is kept verbatim, as Mustachio does: a `{{#section}}` alone on its line leaves that line's newline in
the output. `compile_template(..., standalone_lines=True)` applies the Mustache spec's standalone-line rule instead
(the line of a lone section, inverted, each or comment tag disappears), which makes text bodies tidier but differs
from what Postmark sends.

Values print as Mustachio prints them: strings as they are, integers in decimal, booleans as `True`/`False`
(.NET's spelling), floats without a trailing `.0`; lists, objects and anything else print nothing. The model is
data only: values are read with `dict.get` and never called, converted with `str()`, or looked up as attributes.

Escaping (`escape_html`): Mustachio escapes `{{ }}` by default and has a switch (`DisableContentSafety`) that
Postmark's engine documents for "text bodies and subjects in emails". docs/postmark-api.md §3.3 says only that all three
fields are rendered, so the choice is the caller's: `escape_html=True` (the default) for HtmlBody, `False` for
Subject and TextBody.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

MAX_DEPTH: Final = 100  # sections nested deeper than this are a syntax error (bounds recursion while rendering)
CACHE_SIZE: Final = 1024  # compiled templates kept by compile_cached
CONTENT_PLACEHOLDER: Final = "{{{ @content }}}"


@dataclass(frozen=True, slots=True)
class TemplateError:
    """One problem in a template, placed as Postmark's ValidationErrors place it (1-based line and column)."""

    message: str
    line: int
    character: int


class TemplateSyntaxError(ValueError):
    """A template that cannot be compiled; `errors` lists every problem found, in source order."""

    def __init__(self, errors: list[TemplateError]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"line {first.line}, character {first.character}: {first.message}{more}")
        self.errors = errors


class TemplateRenderError(ValueError):
    """One render failed (output too large, an `each` over a non-list, a layout used wrongly); `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- parsing -----------------------------------------------------------------------------------------------------

# A path: optional `../` steps, then `.` or dotted word segments. Anything else (spaces, `-`, `@`, `/`, `[`) is
# refused, as Mustachio's Tokenizer refuses it ("The path '…' is not valid").
_PATH = re.compile(r"(?P<ups>(?:\.\./)*)(?P<names>\.|\w+(?:\.\w+)*)?")
_LINE_END = re.compile(r"[ \t]*(?:\r?\n|\Z)")
_UNSUBSCRIBE = "pm:unsubscribe"  # Postmark's unsubscribe-link placeholder: left in place for the sending pipeline
_CONTENT = "@content"


@dataclass(frozen=True, slots=True)
class _Path:
    text: str
    ups: int
    names: tuple[str, ...]


@dataclass(slots=True)
class _Var:
    path: _Path
    raw: bool


@dataclass(slots=True)
class _Section:
    path: _Path
    inverted: bool
    body: list[_Node]


@dataclass(slots=True)
class _Each:
    path: _Path
    body: list[_Node]


class _ContentSlot:
    """Where a layout receives its rendered content (`{{{ @content }}}`)."""

    __slots__ = ()


_Node = str | _Var | _Section | _Each | _ContentSlot


@dataclass(slots=True)
class _Tag:
    start: int  # offset of `{{`, for error positions
    end: int  # offset after the closing braces
    kind: str  # comment | var | raw | open | inverted | each | close | close_each | content | literal | bad
    text: str = ""  # the path text (or the literal to emit)
    cut_start: int = -1  # with standalone_lines: the span removed from the output, whole line included
    cut_end: int = -1


@dataclass(slots=True)
class _Frame:
    tag: _Tag
    node: _Section | _Each
    parent_body: list[_Node]


class _Positions:
    """Offsets to 1-based (line, character), computed only when an error needs them."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.newlines: list[int] | None = None

    def at(self, offset: int) -> tuple[int, int]:
        if self.newlines is None:
            self.newlines = [match.start() for match in re.finditer("\n", self.source)]
        line = bisect_right(self.newlines, offset - 1)
        line_start = self.newlines[line - 1] + 1 if line else 0
        return line + 1, offset - line_start + 1


def _parse_path(text: str) -> _Path | None:
    match = _PATH.fullmatch(text)
    if match is None or not text:
        return None
    names = match["names"]
    ups = len(match["ups"]) // 3
    return _Path(text, ups, () if names in (None, ".") else tuple(names.split(".")))


def _scan(source: str, errors: list[tuple[int, str]]) -> list[_Tag]:
    """Find every tag; lexical problems go to `errors` as (offset, message)."""
    tags: list[_Tag] = []
    pos = 0
    find = source.find
    while (start := find("{{", pos)) >= 0:
        triple = source.startswith("{", start + 2)
        inner = start + (3 if triple else 2)
        close = find("}}", inner)
        if close < 0:
            errors.append((start, "This tag is opened with '{{' but never closed with '}}'."))
            break
        body = source[inner:close].strip()
        nested = find("{{", inner, close)
        if nested >= 0 and not body.startswith("!"):
            errors.append((start, "This tag is opened with '{{' but never closed with '}}'."))
            pos = nested
            continue
        end = close + 2
        if triple:
            if source.startswith("}", end):
                end += 1
            else:
                errors.append((start, "A tag opened with '{{{' must be closed with '}}}'."))
                tags.append(_Tag(start, end, "bad"))
                pos = end
                continue
        tags.append(_classify(source, start, end, body, triple, errors))
        pos = end
    return tags


def _classify(source: str, start: int, end: int, body: str, triple: bool, errors: list[tuple[int, str]]) -> _Tag:
    sigil = body[:1]
    if triple or sigil == "&":
        name = body if triple else body[1:].strip()
        kind = "raw"
    elif sigil == "!":
        return _Tag(start, end, "comment")
    elif sigil in ("#", "^", "/"):
        name = body[1:].strip()
        if name == "each" or (name.startswith("each") and name[4:5].isspace()):
            if sigil == "^":
                errors.append((start, "'{{^each}}' is not Mustachio: invert with '{{^name}}'."))
                return _Tag(start, end, "bad")
            if sigil == "/":
                if name != "each":
                    errors.append((start, "The syntax to close the 'each' block should be: '{{/each}}'."))
                    return _Tag(start, end, "bad")
                return _Tag(start, end, "close_each")
            name = name[4:].strip()
            if not name:
                errors.append(
                    (
                        start,
                        "The 'each' block being opened requires a model path to be specified in "
                        "the form '{{#each <name>}}'.",
                    )
                )
            kind = "each"
        else:
            kind = {"#": "open", "^": "inverted", "/": "close"}[sigil]
    elif sigil == ">":
        errors.append((start, "Partials ('{{> name}}') are not supported by Mustachio."))
        return _Tag(start, end, "bad")
    elif sigil == "=":
        errors.append((start, "Set-delimiter tags ('{{=<% %>=}}') are not supported by Mustachio."))
        return _Tag(start, end, "bad")
    else:
        name = body
        kind = "var"
    if name == _UNSUBSCRIBE and kind in ("var", "raw"):
        return _Tag(start, end, "literal", source[start:end])
    if name == _CONTENT:
        if kind == "raw":
            return _Tag(start, end, "content")
        errors.append((start, f"The layout placeholder must be written '{CONTENT_PLACEHOLDER}'."))
        return _Tag(start, end, "bad")
    if not name:
        if kind != "each":  # an empty `each` is already reported above
            errors.append((start, "This tag is empty: it needs a model path, as in '{{ name }}'."))
    elif _parse_path(name) is None:
        errors.append((start, f"The path '{name}' is not valid. Please see documentation for examples of valid paths."))
    return _Tag(start, end, kind, name)


_STANDALONE_KINDS = frozenset({"comment", "open", "inverted", "each", "close", "close_each"})


def _mark_standalone(source: str, tags: list[_Tag]) -> None:
    """The Mustache spec's rule: a section, inverted, each or comment tag alone on its line takes the line with it."""
    for tag in tags:
        if tag.kind not in _STANDALONE_KINDS:
            continue
        line_start = source.rfind("\n", 0, tag.start) + 1
        if source[line_start : tag.start].strip(" \t"):
            continue
        after = _LINE_END.match(source, tag.end)
        if after is not None:
            tag.cut_start, tag.cut_end = line_start, after.end()


def _parse(source: str, standalone_lines: bool = False) -> tuple[list[_Node], list[TemplateError], list[int]]:
    """The template's tree, every error found (in source order), and the offsets of its `{{{ @content }}}`."""
    raw_errors: list[tuple[int, str]] = []
    tags = _scan(source, raw_errors)
    if standalone_lines:
        _mark_standalone(source, tags)
    root: list[_Node] = []
    body = root
    stack: list[_Frame] = []
    content_slots: list[int] = []
    pos = 0

    def add(node: _Node) -> None:
        if isinstance(node, str) and body and isinstance(body[-1], str):
            body[-1] += node
        elif node:
            body.append(node)

    def close_top() -> None:
        nonlocal body
        body = stack.pop().parent_body

    for tag in tags:
        cut_start, cut_end = (tag.cut_start, tag.cut_end) if tag.cut_start >= 0 else (tag.start, tag.end)
        add(source[pos:cut_start])
        pos = cut_end
        kind = tag.kind
        if kind in ("var", "raw"):
            path = _parse_path(tag.text)
            if path is not None:
                add(_Var(path, kind == "raw"))
        elif kind == "literal":
            add(tag.text)
        elif kind == "content":
            content_slots.append(tag.start)
            add(_ContentSlot())
        elif kind in ("open", "inverted", "each"):
            top = stack[-1] if stack else None
            if kind != "each" and top is not None and top.tag.kind != "each" and top.tag.text == tag.text:
                close_top()  # Mustachio's `{{#x}}…{{^x}}…{{/x}}`: reopening the open section's path closes it
            path = _parse_path(tag.text) or _Path(tag.text, 0, ())
            node: _Section | _Each = _Each(path, []) if kind == "each" else _Section(path, kind == "inverted", [])
            if len(stack) == MAX_DEPTH:
                raw_errors.append((tag.start, f"Sections are nested more than {MAX_DEPTH} levels deep."))
            if len(stack) < MAX_DEPTH:
                body.append(node)  # deeper sections stay out of the tree: the template is refused anyway
            stack.append(_Frame(tag, node, body))
            body = node.body
        elif kind == "close_each":
            if stack and stack[-1].tag.kind == "each":
                close_top()
            else:
                raw_errors.append(
                    (
                        tag.start,
                        "An 'each' block is being closed, but no corresponding opening "
                        "element ('{{#each <name>}}') was detected.",
                    )
                )
        elif kind == "close":
            if stack and stack[-1].tag.kind != "each" and stack[-1].tag.text == tag.text:
                close_top()
            elif stack:
                opened = stack[-1].tag
                expected = "{{/each}}" if opened.kind == "each" else "{{/" + opened.text + "}}"
                raw_errors.append(
                    (
                        tag.start,
                        f"It appears that open and closing elements are mismatched: "
                        f"'{{{{/{tag.text}}}}}' where '{expected}' was expected.",
                    )
                )
            else:
                raw_errors.append((tag.start, f"'{{{{/{tag.text}}}}}' closes a block that was never opened."))
    add(source[pos:])
    for frame in stack:
        name = frame.tag.text or "each"
        raw_errors.append(
            (
                frame.tag.start,
                f"A scope block to the following path was opened but not closed: "
                f"'{name}', please close it using the appropriate syntax.",
            )
        )
    positions = _Positions(source)
    errors = [TemplateError(message, *positions.at(offset)) for offset, message in sorted(raw_errors)]
    return root, errors, content_slots


# -- rendering ---------------------------------------------------------------------------------------------------

# A context is (value, parent context); the root's parent is None. `state` is [characters left, layout content].
_Context = tuple[Any, Any]
_Render = Callable[[_Context, list[str], list[Any]], None]
_Get = Callable[[_Context], Any]

_PLAIN = frozenset({str, int, float, bool, dict, list, tuple, type(None)})
_needs_escape = re.compile(r"[&<>\"']").search


MAX_ITERATIONS = 100_000  # `{{#each}}` iterations per render, all loops together


class _OutputTooLarge(Exception):
    """Raised deep in a render; turned into TemplateRenderError with the limit in the message."""


def _escape(text: str) -> str:
    # HttpUtility.HtmlEncode's five characters, with its numeric form for the apostrophe.
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _to_text(value: Any) -> str:
    """How Mustachio prints a value (ContextObject.ToString): scalars only; lists, objects and others print ""."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "True" if value else "False"
    if kind is int:
        return _int_text(value)
    if kind is float:
        return _float_text(value)
    # Subclasses (IntEnum, str subclasses) print through the base type's method, never their own.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return _int_text(int.__index__(value))
    if isinstance(value, float):
        return _float_text(float.__float__(value))
    return ""


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError as error:  # more digits than sys.get_int_max_str_digits(): a guard against slow conversion
        raise TemplateRenderError("A number in the model is too large to print.") from error


def _float_text(value: float) -> str:
    # JSON numbers such as 3.0 print "3" (as in .NET and JavaScript); others in the shortest round-trip form.
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _is_truthy(value: Any) -> bool:
    """Mustachio's Exists(): false for missing, null, false, 0, "", empty lists and objects."""
    if type(value) in _PLAIN:
        return bool(value)
    # Subclasses answer through the base type's method, never their own; anything that is not data is missing.
    if isinstance(value, dict):
        return dict.__len__(value) > 0
    if isinstance(value, list):
        return list.__len__(value) > 0
    if isinstance(value, tuple):
        return tuple.__len__(value) > 0
    if isinstance(value, str):
        return str.__len__(value) > 0
    if isinstance(value, float):
        return float.__float__(value) != 0
    if isinstance(value, int):
        return int.__index__(value) != 0
    return False


def _child(value: Any, name: str) -> Any:
    """`value[name]` when value is an object; None otherwise (no attribute lookup, no overridden methods)."""
    if type(value) is dict:
        return value.get(name)
    if isinstance(value, dict):
        return dict.get(value, name)
    return None


def _find(ctx: _Context | None, name: str) -> Any:
    """A name in the nearest context whose value is an object (see the module docstring for why not further)."""
    while ctx is not None:
        value = ctx[0]
        if type(value) is dict:
            return value.get(name)
        if isinstance(value, dict):
            return dict.get(value, name)
        ctx = ctx[1]
    return None


def _climb(ctx: _Context, ups: int) -> _Context:
    for _ in range(ups):
        if ctx[1] is not None:
            ctx = ctx[1]
    return ctx


def _getter(path: _Path) -> _Get:
    ups, names = path.ups, path.names
    if not names:
        if ups == 0:
            return lambda ctx: ctx[0]
        return lambda ctx: _climb(ctx, ups)[0]
    first, rest = names[0], names[1:]
    if ups == 0 and not rest:

        def get_one(ctx: _Context) -> Any:
            value = ctx[0]
            if type(value) is dict:
                return value.get(first)
            return _find(ctx, first)

        return get_one

    def get(ctx: _Context) -> Any:
        value = _find(_climb(ctx, ups), first)
        for name in rest:
            value = _child(value, name)
        return value

    return get


def _scoper(path: _Path) -> Callable[[_Context], _Context]:
    """The context a section or `each` opens: one context per path segment, as Mustachio chains them."""
    ups, names = path.ups, path.names
    if not names:
        return lambda ctx: _climb(ctx, ups)
    first, rest = names[0], names[1:]
    if ups == 0 and not rest:

        def scope_one(ctx: _Context) -> _Context:
            value = ctx[0]
            return (value.get(first) if type(value) is dict else _find(ctx, first)), ctx

        return scope_one

    def scope(ctx: _Context) -> _Context:
        start = _climb(ctx, ups)
        value = _find(start, first)
        inner: _Context = (value, start)
        for name in rest:
            value = _child(value, name)
            inner = (value, inner)
        return inner

    return scope


def _compile_block(nodes: list[_Node], escape: bool) -> _Render:
    # Each constant text is emitted by the step that follows it, which halves the calls per render.
    steps: list[_Render] = []
    prefix = ""
    for node in nodes:
        if isinstance(node, str):
            prefix = node
            continue
        steps.append(_compile_node(node, escape, prefix))
        prefix = ""
    if prefix:
        steps.append(_text_step(prefix))
    if len(steps) == 1:
        return steps[0]
    if not steps:
        return lambda ctx, out, state: None
    run = tuple(steps)

    def block(ctx: _Context, out: list[str], state: list[Any]) -> None:
        for step in run:
            step(ctx, out, state)

    return block


def _text_step(text: str) -> _Render:
    size = len(text)

    def emit_text(ctx: _Context, out: list[str], state: list[Any]) -> None:
        state[0] -= size
        out.append(text)

    return emit_text


def _compile_node(node: _Node, escape: bool, prefix: str) -> _Render:
    """The step for `node`, which first emits `prefix` (the constant text before it)."""
    size = len(prefix)
    if isinstance(node, _Var):
        path = node.path
        get = _getter(path)
        if escape and not node.raw and path.ups == 0 and len(path.names) == 1:
            # The most common tag, `{{ name }}`, with the lookup inlined: a third of a render's time is here.
            name = path.names[0]

            def emit_escaped_name(ctx: _Context, out: list[str], state: list[Any]) -> None:
                if size:
                    out.append(prefix)
                value = ctx[0]
                value = value.get(name) if type(value) is dict else _find(ctx, name)
                text = value if type(value) is str else _to_text(value)
                if _needs_escape(text):
                    text = _escape(text)
                state[0] -= size + len(text)
                if state[0] < 0:
                    raise _OutputTooLarge
                out.append(text)

            return emit_escaped_name
        if escape and not node.raw:

            def emit_escaped(ctx: _Context, out: list[str], state: list[Any]) -> None:
                if size:
                    out.append(prefix)
                value = get(ctx)
                text = value if type(value) is str else _to_text(value)
                if _needs_escape(text):
                    text = _escape(text)
                state[0] -= size + len(text)
                if state[0] < 0:
                    raise _OutputTooLarge
                out.append(text)

            return emit_escaped

        def emit_raw(ctx: _Context, out: list[str], state: list[Any]) -> None:
            if size:
                out.append(prefix)
            value = get(ctx)
            text = value if type(value) is str else _to_text(value)
            state[0] -= size + len(text)
            if state[0] < 0:
                raise _OutputTooLarge
            out.append(text)

        return emit_raw
    if isinstance(node, _Section):
        body = _compile_block(node.body, escape)
        scope = _scoper(node.path)
        if node.inverted:

            def inverted(ctx: _Context, out: list[str], state: list[Any]) -> None:
                if size:
                    state[0] -= size
                    out.append(prefix)
                inner = scope(ctx)
                if not _is_truthy(inner[0]):
                    body(inner, out, state)

            return inverted

        def section(ctx: _Context, out: list[str], state: list[Any]) -> None:
            if size:
                state[0] -= size
                out.append(prefix)
            inner = scope(ctx)
            if _is_truthy(inner[0]):
                body(inner, out, state)

        return section
    if isinstance(node, _Each):
        body = _compile_block(node.body, escape)
        scope = _scoper(node.path)
        name = node.path.text

        def each(ctx: _Context, out: list[str], state: list[Any]) -> None:
            if size:
                state[0] -= size
                out.append(prefix)
            lst = scope(ctx)
            items = lst[0]
            kind = type(items)
            if kind is not list and kind is not tuple:
                if not _is_truthy(items):
                    return
                if isinstance(items, list | tuple):
                    items = list.__iter__(items) if isinstance(items, list) else tuple.__iter__(items)
                else:
                    raise TemplateRenderError(
                        f"'{name}' is used like an array by the template, but is a scalar "
                        "value or object in your model."
                    )
            for item in items:
                # Iterations have a budget of their own, much smaller than the output's: nested loops over
                # a large model would otherwise spend seconds of CPU (on the event loop) before the
                # output limit stopped them.
                state[2] -= 1
                if state[2] < 0:
                    raise TemplateRenderError(f"The template loops more than {MAX_ITERATIONS:,} times.")
                body((item, lst), out, state)
                # Every iteration costs at least one character of the budget, so loops that print nothing are
                # bounded too.
                state[0] -= 1
                if state[0] < 0:
                    raise _OutputTooLarge

        return each

    def content(ctx: _Context, out: list[str], state: list[Any]) -> None:
        text = state[1]
        if text is None:
            raise TemplateRenderError(f"'{CONTENT_PLACEHOLDER}' can only be rendered in a layout, with content.")
        state[0] -= size + len(text)
        if state[0] < 0:
            raise _OutputTooLarge
        out.append(prefix)
        out.append(text)

    return content


class CompiledTemplate:
    """A parsed template, rendered any number of times (thread-safe: renders share no state)."""

    __slots__ = ("_escaped", "_raw", "_tree", "content_slots")

    def __init__(self, tree: list[_Node], content_slots: int) -> None:
        self._tree = tree
        self._escaped: _Render | None = None
        self._raw: _Render | None = None
        self.content_slots = content_slots  # how many `{{{ @content }}}` the template holds (a layout needs 1)

    def render(self, model: Any, *, escape_html: bool = True, max_output: int = 10_000_000) -> str:
        """The template filled from `model`; `escape_html=False` for Subject and TextBody (module docstring)."""
        return self._render(model, escape_html, max_output, None)

    def _render(self, model: Any, escape_html: bool, max_output: int, content: str | None) -> str:
        if escape_html:
            if self._escaped is None:
                self._escaped = _compile_block(self._tree, True)
            render = self._escaped
        else:
            if self._raw is None:
                self._raw = _compile_block(self._tree, False)
            render = self._raw
        out: list[str] = []
        state: list[Any] = [max_output, content, MAX_ITERATIONS]
        try:
            render((model, None), out, state)
        except _OutputTooLarge as error:
            raise TemplateRenderError(f"The rendered content would exceed {max_output:,} characters.") from error
        # Text outside `each` is checked here, once: it is bounded by the template's own size.
        if state[0] < 0:
            raise TemplateRenderError(f"The rendered content would exceed {max_output:,} characters.")
        return "".join(out)


def compile_template(source: str, *, standalone_lines: bool = False) -> CompiledTemplate:
    """Parse `source` once; raises TemplateSyntaxError listing every error with its line and character."""
    tree, errors, content_slots = _parse(source, standalone_lines)
    if errors:
        raise TemplateSyntaxError(errors)
    return CompiledTemplate(tree, len(content_slots))


@lru_cache(maxsize=CACHE_SIZE)
def compile_cached(source: str, *, standalone_lines: bool = False) -> CompiledTemplate:
    """compile_template, remembered for the most recently used templates (errors are not cached)."""
    return compile_template(source, standalone_lines=standalone_lines)


def render_with_layout(
    layout: CompiledTemplate,
    content: CompiledTemplate,
    model: Any,
    *,
    escape_html: bool = True,
    max_output: int = 10_000_000,
) -> str:
    """`content` rendered from `model`, placed at the layout's `{{{ @content }}}`, the layout rendered from `model`."""
    if layout.content_slots != 1:
        raise TemplateRenderError(
            f"A layout must contain '{CONTENT_PLACEHOLDER}' exactly once; this one has {layout.content_slots}."
        )
    if content.content_slots:
        raise TemplateRenderError(f"'{CONTENT_PLACEHOLDER}' belongs in the layout, not in the content template.")
    inner = content.render(model, escape_html=escape_html, max_output=max_output)
    return layout._render(model, escape_html, max_output, inner)


def validate_layout(source: str) -> list[TemplateError]:
    """Every problem of a layout body: syntax errors, and `{{{ @content }}}` missing or repeated (Postmark's 1131)."""
    _tree, errors, slots = _parse(source)
    # Postmark's wording for this rule (its ErrorCode 1131), as the create and edit refusals say it too.
    rule = f"The layout content placeholder must be present exactly once in a layout ('{CONTENT_PLACEHOLDER}')"
    if not slots:
        errors.append(TemplateError(f"{rule}; it is missing.", 1, 1))
    positions = _Positions(source)
    for n, offset in enumerate(slots[1:], start=2):
        errors.append(TemplateError(f"{rule}; this is occurrence {n}.", *positions.at(offset)))
    return sorted(errors, key=lambda error: (error.line, error.character))


# -- suggested model ---------------------------------------------------------------------------------------------

_SCALAR, _CONDITIONAL, _COLLECTION = "scalar", "conditional", "collection"


class _Inferred:
    """Mustachio's InferredTemplateModel: one node per path segment, with how the template uses it."""

    __slots__ = ("children", "key", "parent", "usages")

    def __init__(self, key: str, parent: _Inferred | None) -> None:
        self.key = key
        self.parent = parent
        self.children: dict[str, _Inferred] = {}
        self.usages: set[str] = set()

    def resolve(self, path: _Path) -> _Inferred:
        node = self
        for _ in range(path.ups):
            node = node.parent or node
        for name in path.names:
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = _Inferred(name, node)
            node = child
        return node

    def shape(self, depth: int = 0) -> Any:
        """Mustachio's GetModelRepresentation: `<key>_Value` for scalars, `[{…}]` or `[key_1, key_2, key_3]` for
        collections, objects otherwise (an empty object for a section whose content names nothing)."""
        if self.usages == {_SCALAR}:
            return f"{self.key}_Value"
        # Deeper than MAX_DEPTH is cut off, so the suggestion stays serialisable whatever the paths.
        children = {name: child.shape(depth + 1) for name, child in self.children.items()} if depth < MAX_DEPTH else {}
        if _COLLECTION in self.usages:
            return [children] if children else [f"{self.key}_{n}" for n in (1, 2, 3)]
        return children


def _infer(nodes: list[_Node], scope: _Inferred) -> None:
    for node in nodes:
        if isinstance(node, _Var):
            scope.resolve(node.path).usages.add(_SCALAR)
        elif isinstance(node, _Section):
            inner = scope.resolve(node.path)
            inner.usages.add(_CONDITIONAL)
            _infer(node.body, inner)
        elif isinstance(node, _Each):
            inner = scope.resolve(node.path)
            inner.usages.add(_COLLECTION)
            _infer(node.body, inner)


def suggest_model(*sources: str) -> dict[str, Any]:
    """Postmark's SuggestedTemplateModel for these bodies together: every path they read, with placeholder values.

    Sources with syntax errors contribute the paths that could be parsed, so a validation answer can still
    suggest a model.
    """
    root = _Inferred("", None)
    for source in sources:
        tree, _errors, _slots = _parse(source)
        _infer(tree, root)
    return {name: child.shape(1) for name, child in root.children.items()}
