"""What the management pages (issue 15, D2: templates, streams, servers and tokens, webhooks, sending domains)
share: the layout of a page that belongs to a whole server or to the installation, notices after a change,
and reading form fields.

A page of a stream has its stream in the URL (`/ui/servers/{id}/streams/{stream}/…`); a page of a whole server
(`/ui/servers/{id}/templates`) or of the installation (`/ui/domains`) keeps the pickers' choice in the query
(`?stream=`, `?server=`), so that the navigation leads back to the stream the operator was looking at.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse

from posthouse.server.dashboard.rendering import layout
from posthouse.server.dashboard.sessions import form_of, state_of
from posthouse.server.errors import NotFoundError

# Notices a page shows after a change it redirected from (`?done=<key>`): fixed words, never text from the URL.
NOTICES = {
    "created": "Created.", "saved": "Saved.", "deleted": "Deleted.", "archived": "Archived.",
    "unarchived": "Restored: the stream takes mail again.", "queued": "Queued: it is posted within seconds.",
    "retried": "Queued again: it is posted within seconds.", "verified": "Checked.",
}


async def pick_stream(request: Request, server: Any) -> str:
    """The stream of the query (`?stream=`) when the server has it, else its default one."""
    streams = await state_of(request).accounts.streams(server.id)
    wanted = request.query_params.get("stream", "")
    if wanted in streams:
        return wanted
    return "outbound" if "outbound" in streams else next(iter(streams), "outbound")


async def server_page(request: Request, server: Any, view: str) -> dict[str, Any]:
    """The layout of a page of a whole server (the stream picker keeps the query's stream)."""
    return await layout(request, server=server, stream=await pick_stream(request, server), view=view)


async def account_page(request: Request, view: str) -> dict[str, Any]:
    """The layout of a page of the installation: the pickers show the query's server (else the first one)."""
    accounts = state_of(request).accounts
    server = None
    text = request.query_params.get("server", "")
    if text.isascii() and text.isdigit() and len(text) <= 18:
        try:
            server = await accounts.get_server(int(text))
        except NotFoundError:
            server = None
    if server is None:
        _, first = await accounts.list_servers(0, 1, None)
        server = first[0] if first else None
    stream = await pick_stream(request, server) if server is not None else None
    return await layout(request, server=server, stream=stream, view=view)


def notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("done", ""))


def see_other(url: str, done: str | None = None, **query: Any) -> RedirectResponse:
    """The answer to a form that changed something: back to a page (a GET), with its notice."""
    pairs = {k: v for k, v in {**query, "done": done}.items() if v not in (None, "")}
    return RedirectResponse(url + (("&" if "?" in url else "?") + urlencode(pairs) if pairs else ""), 303)


def keep_query(request: Request) -> dict[str, str]:
    """The pickers' choice (`server`, `stream`) of this request's query, to carry to the next page."""
    return {k: v for k in ("server", "stream") if (v := request.query_params.get(k, ""))}


def field(request: Request, name: str, *, multiline: bool = False) -> str:
    """A form field's value ("" when absent). A textarea's lines come from browsers as CRLF; they are kept
    as LF, as the API's clients send them."""
    value = form_of(request).get(name, "")
    return value.replace("\r\n", "\n") if multiline else value


def checked(request: Request, name: str) -> bool:
    """A checkbox: present (with any value) when ticked."""
    return name in form_of(request)
