"""What the D2 dashboard page tests share: an operator signed in on the `api` fixture's client (the real
runtime over ASGI, both databases), and reading a page's text the way a reader sees it."""

from __future__ import annotations

import html
import re
from typing import Any

from integration.test_dashboard_http import EMAIL, PASSWORD, signed_in

_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


async def operator(api: Any) -> str:
    """Create the operator, sign the `api` client in; the session's CSRF token."""
    await api.runtime.operators.create_user(EMAIL, PASSWORD)
    token: str = await signed_in(api.client)
    return token


def text_of(fragment: str) -> str:
    """The words of an HTML fragment, tags dropped, entities read, spaces collapsed."""
    return _SPACE.sub(" ", html.unescape(_TAGS.sub(" ", fragment))).strip()


def element(page: str, element_id: str) -> str:
    """The text of the element with this id (up to its own closing tag; the pages nest no same-named tag in these)."""
    found = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"no element #{element_id}"
    return text_of(found.group(2))


async def server_id(api: Any) -> int:
    answer = await api.client.get("/server", headers=api.server_headers)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["ID"])
