"""Routing the way Postmark's clients need it: paths match case-insensitively, a trailing slash is
optional, query parameter names are case-insensitive and ignore `_` (docs/postmark-api.md §1.4)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Concatenate, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from posthouse.server.api.access import Access
from posthouse.server.errors import ApiError

Handler = Callable[..., Awaitable[Response]]
_PARAM = re.compile(r"\{(\w+)\}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")  # str.isdigit() and int() also take "¹", "١" and "1_000"
_MAX_INT = 2**63 - 1


def parse_id(value: str) -> int | None:
    """A numeric path id as the database stores it (ASCII digits, below 2^63), or None."""
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > _MAX_INT:
        return None
    return int(value)
Call = TypeVar("Call")


class Route:
    """One row of a route table: method, path (`{name}` captures one segment, passed to the handler by
    name), the handler, and the access it needs; the handler takes the call that access admits."""

    __slots__ = ("access", "handler", "method", "path", "pattern")

    def __init__(self, method: str, path: str, handler: Callable[Concatenate[Call, ...], Awaitable[Response]],
                 access: Access[Call]) -> None:
        self.method = method
        self.path = path  # as written, `{name}` for a parameter (the OpenAPI document names the same paths)
        self.handler: Handler = handler
        self.access: Access[object] = access
        escaped = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
        # A parameter is one segment without NUL: no id or name holds one (they could not be stored on PostgreSQL),
        # so `/templates/a%00b` names no resource and is answered as an unknown path.
        regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/\\x00]+)", escaped)
        # Matched with fullmatch: `$` would also match before a final newline ("/email/bulk/\n" is not a path).
        self.pattern = re.compile(f"{regex}/?", re.IGNORECASE)

    def __repr__(self) -> str:
        return f"Route({self.method} {self.path})"


class Router:
    """Method + path → route, the first in table order that matches."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: list[Route] = list(routes)

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, path exists with another method)."""
        path_known = False
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found:
                if route.method == method:
                    return route, found.groupdict(), True
                path_known = True
        return None, {}, path_known

    def methods(self, path: str) -> list[str]:
        """The methods served at `path`, for the `Allow` header of a 405 (RFC 9110 §15.5.6)."""
        return sorted({route.method for route in self.routes if route.pattern.fullmatch(path)})


def normalize_name(name: str) -> str:
    return name.replace("_", "").lower()


class Query:
    """Query parameters by normalized name (`fromEmail`, `fromemail`, `from_email` are one)."""

    def __init__(self, request: Request) -> None:
        self.raw = list(request.query_params.multi_items())
        for key, value in self.raw:
            if "\x00" in key or "\x00" in value:
                # No stored text holds NUL (see payloads.decode), and PostgreSQL cannot even compare with it.
                raise ApiError(403, f"Invalid request field(s): '{key.replace(chr(0), '%00')}'. "
                                    "A NUL character (%00) is not allowed in a query parameter.")
        self._values: dict[str, str] = {}
        for key, value in self.raw:
            self._values.setdefault(normalize_name(key), value)

    def get(self, name: str) -> str | None:
        value = self._values.get(normalize_name(name))
        return value if value not in (None, "") else None

    def int(self, name: str, error_code: int) -> int | None:
        """An integer parameter: ASCII digits with an optional sign, within what the database stores
        (a 64-bit integer); anything else is `error_code`, never a 500 further down."""
        value = self.get(name)
        if value is None:
            return None
        if not _INTEGER.fullmatch(value) or not -_MAX_INT <= int(value) <= _MAX_INT:
            raise ApiError(error_code, f"The '{name}' parameter must be a whole number below 2^63.")
        return int(value)

    def bool(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None:
            return None
        return value.lower() in ("true", "1", "yes")  # case-insensitive: postmarker sends `True`

    def with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(suffix, value) for parameters named `<prefix><suffix>`, prefix matched case-insensitively."""
        return [(k[len(prefix):], v) for k, v in self.raw if k.lower().startswith(prefix.lower())]
