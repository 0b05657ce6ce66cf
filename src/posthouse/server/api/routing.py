"""Routing the way Postmark's clients need it: paths match case-insensitively, a trailing slash is
optional, query parameter names are case-insensitive and ignore `_` (docs/postmark-api.md §1.4)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from posthouse.server.errors import ApiError

Handler = Callable[..., Awaitable[Response]]
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    path: str  # as registered, `{name}` for a parameter (the OpenAPI document names the same paths)


class Router:
    """Method + path → handler; `{name}` captures one path segment."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        escaped = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
        regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", escaped)
        self.routes.append(Route(method, re.compile(f"^{regex}/?$", re.IGNORECASE), handler, path))

    def match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        """(handler, path params, path exists with another method)."""
        path_known = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found:
                if route.method == method:
                    return route.handler, found.groupdict(), True
                path_known = True
        return None, {}, path_known


def normalize_name(name: str) -> str:
    return name.replace("_", "").lower()


class Query:
    """Query parameters by normalized name (`fromEmail`, `fromemail`, `from_email` are one)."""

    def __init__(self, request: Request) -> None:
        self.raw = list(request.query_params.multi_items())
        self._values: dict[str, str] = {}
        for key, value in self.raw:
            self._values.setdefault(normalize_name(key), value)

    def get(self, name: str) -> str | None:
        value = self._values.get(normalize_name(name))
        return value if value not in (None, "") else None

    def int(self, name: str, error_code: int) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise ApiError(error_code, f"The '{name}' parameter must be a number.") from None

    def bool(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None:
            return None
        return value.lower() in ("true", "1", "yes")  # case-insensitive: postmarker sends `True`

    def with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(suffix, value) for parameters named `<prefix><suffix>`, prefix matched case-insensitively."""
        return [(k[len(prefix):], v) for k, v in self.raw if k.lower().startswith(prefix.lower())]
