"""JSON in and out of the API: bounded body reading, decoding into wire Structs, JSON responses."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from posthouse import wire
from posthouse.server.errors import ApiError

T = TypeVar("T")
_FIELD_PATH = re.compile(r"at `\$(?:\[\d+\])?\.?([A-Za-z]*)")
# Arrays and objects nested deeper than this are refused (402). Real payloads (a TemplateModel) nest a few
# levels; the limit keeps far below the interpreter's recursion limit, so what was accepted here can be
# decoded and encoded again anywhere (the bulk worker re-reads stored requests) without a RecursionError.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# `\u0000` with an even number of backslashes before it: the escape of U+0000 (NUL), not an escaped backslash
# followed by "u0000". A raw NUL byte is already invalid JSON.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
JSON = "application/json"
MAX_SINGLE = 10 * 1024 * 1024  # docs/postmark-api.md §1.2: 10 MB for /email
MAX_BATCH = 50 * 1024 * 1024  # and 50 MB for a batch
MAX_OTHER = 1024 * 1024


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(wire.encoder.encode(value), status_code=status, media_type=JSON, headers=headers)


def error_response(status: int, code: int, message: str) -> Response:
    return json_response(wire.ErrorResponse(error_code=code, message=message), status,
                         headers={"X-PM-ApiErrorCode": str(code)})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes `limit` bytes (docs/postmark-api.md §1.2)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(300, f"The request is larger than the {limit // (1024 * 1024)} MB limit.", 413)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(300, f"The request is larger than the {limit // (1024 * 1024)} MB limit.", 413)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(402, "The request body was not received completely.") from None
    return b"".join(chunks)


async def read_required_body(request: Request, error_code: int, what: str) -> bytes:
    """A JSON body the endpoint requires: an empty one is Postmark's `error_code` for that endpoint."""
    body = await read_body(request, MAX_OTHER)
    if not body.strip():
        raise ApiError(error_code, f"The request body is required: {what}.")
    return body


def decode(body: bytes, kind: type[T], request: Request | None = None) -> T:
    """JSON → a wire Struct; syntax or type errors are Postmark's 402 Invalid JSON."""
    if request is not None:
        content_type = request.headers.get("content-type", "")
        # Only a body needs a JSON type; an absent type is tolerated (docs/postmark-api.md §1.1).
        if content_type and "json" not in content_type.lower():
            raise ApiError(415, f"Unsupported Content-Type '{content_type}': send application/json.", 415)
    if not body.strip():
        raise ApiError(402, "Invalid JSON: the request body is empty.")
    try:
        value = msgspec.json.decode(body, type=kind)
    except RecursionError:
        raise ApiError(402, f"Invalid JSON: arrays and objects nested more than {MAX_JSON_DEPTH} levels deep.") \
            from None
    except msgspec.ValidationError as exc:
        # A well-formed body with a field of the wrong type: Postmark's 403 "Invalid request field(s)".
        found = _FIELD_PATH.search(str(exc))
        field_name = found.group(1) if found else "?"
        if not found or not field_name:
            raise ApiError(402, f"Invalid JSON: {exc}") from None
        raise ApiError(403, f"Invalid request field(s): '{field_name}'. {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(402, f"Invalid JSON: {exc}") from None
    if nests_deeper_than(body, MAX_JSON_DEPTH):
        raise ApiError(402, f"Invalid JSON: arrays and objects nested more than {MAX_JSON_DEPTH} levels deep.")
    if b"\\u0000" in body and _NUL_ESCAPE.search(body):
        # No text Posthouse keeps may hold NUL: RFC 5322 §3.5 leaves it out of a message's text, and
        # PostgreSQL's text cannot store it (SQLite can: refused here, the two stores take the same input).
        raise ApiError(403, f"Invalid request field(s): '{_field_holding_nul(msgspec.json.decode(body))}'. "
                            "A NUL character (\\u0000) is not allowed in any field.")
    return value


def _field_holding_nul(value: Any) -> str:
    """The name of the field (at the top of the body, or of a list's item) whose key or text holds a NUL."""
    stack: list[tuple[Any, str]] = [(value, "?")]
    while stack:
        node, field = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return field
        elif isinstance(node, dict):
            for key, item in node.items():
                name = key if field == "?" else field
                if "\x00" in key:
                    return name
                stack.append((item, name))
        elif isinstance(node, list):
            stack.extend((item, field) for item in node)
    return "?"


def nests_deeper_than(document: bytes, depth: int) -> bool:
    """Whether valid JSON nests arrays and objects more than `depth` levels deep.

    Without a Python loop over the bytes: strings are cut out, everything but brackets dropped, and
    innermost pairs removed one level per round, at most `depth` rounds (bytes methods run in C)."""
    if document.count(b"[") + document.count(b"{") <= depth:
        return False
    brackets = _JSON_STRING.sub(b"", document).translate(None, _NOT_BRACKETS)
    for _ in range(depth):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")
    return bool(brackets)


