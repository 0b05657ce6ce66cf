"""Templates: the Jinja2 environment (autoescaping on), the filters pages use, the layout's data (server and
stream pickers, navigation), and the one function that turns a template into a response."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from posthouse import wire
from posthouse.server.dashboard.sessions import session_of, state_of
from posthouse.server.services.clock import from_micros

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("posthouse.server.dashboard", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)


def _moment(value: int | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return from_micros(value)
    return datetime.fromisoformat(value)


def stamp(value: int | str | None) -> str:
    """µs or ISO 8601 → `2026-05-01 12:34:56 UTC` (the dashboard shows UTC, as its date filters read it)."""
    moment = _moment(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


def iso_attr(value: int | str | None) -> str:
    moment = _moment(value)
    return moment.isoformat() if moment is not None else ""


def addresses(items: list[wire.EmailAddress]) -> str:
    return ", ".join(f"{a.name} <{a.email}>" if a.name else a.email for a in items)


_ENV.filters.update(stamp=stamp, iso_attr=iso_attr, addresses=addresses)


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    view: str  # the page's name in a server's URL: /ui/servers/{id}/streams/{stream}/{view}
    needs_sandbox: bool = False
    # Where the page lives: "stream" (the URL above), "server" (/ui/servers/{id}/{view}, one page for the
    # server's streams) or "account" (/ui/{view}, the installation's); the latter two keep the pickers' choice
    # in the query.
    scope: str = "stream"

    def href(self, server_id: int, stream: str | None) -> str:
        if self.scope == "server":
            return f"/ui/servers/{server_id}/{self.view}?{urlencode({'stream': stream or ''})}"
        if self.scope == "account":
            return f"/ui/{self.view}?{urlencode({'server': server_id, 'stream': stream or ''})}"
        return f"/ui/servers/{server_id}/streams/{stream}/{self.view}"


# The navigation, in order. Issue 15's second step (D2) adds its pages here: "stats" (statistics) after
# the mail views, then the management pages (servers and tokens, streams, suppressions, bounces, webhooks,
# templates, sending domains), each a NavItem whose view its routes module serves.
NAV_MAIL = (NavItem("Activity", "activity"), NavItem("Sandbox inbox", "inbox", needs_sandbox=True),
            NavItem("Inbound", "inbound"))
NAV_INSIGHTS: tuple[NavItem, ...] = (NavItem("Statistics", "stats"),)
NAV_MANAGE: tuple[NavItem, ...] = (
    NavItem("Suppressions", "suppressions"), NavItem("Bounces", "bounces"),
    NavItem("Templates", "templates", scope="server"), NavItem("Webhooks", "webhooks"),
    NavItem("Streams", "streams", scope="server"), NavItem("Servers", "servers", scope="account"),
    NavItem("Domains", "domains", scope="account"),
)
MAX_SERVERS_LISTED = 200  # in the server picker


async def layout(request: Request, *, server: Any = None, stream: str | None = None, view: str = "") -> dict[str, Any]:
    """What the base template needs: who is signed in, the CSRF token, the pickers and the navigation."""
    state = state_of(request)
    session = session_of(request)
    _, servers = await state.accounts.list_servers(0, MAX_SERVERS_LISTED, None)
    streams: list[Any] = []
    sandbox = state.sandbox_all
    if server is not None:
        streams = [s for s in (await state.accounts.streams(server.id)).values()
                   if s.archived_at is None or s.id == stream]
        sandbox = sandbox or server.settings.get("delivery_type") == "Sandbox"
    sections = [("Mail", [n for n in NAV_MAIL if sandbox or not n.needs_sandbox]), ("Insights", list(NAV_INSIGHTS)),
                ("Manage", list(NAV_MANAGE))]
    return {"session": session, "csrf": session.csrf_token, "servers": servers, "server": server, "streams": streams,
            "stream": stream, "view": view, "nav": [(title, items) for title, items in sections if items],
            "has_inbox": sandbox}


def nav_item(view: str) -> NavItem | None:
    """The navigation's entry for a view name (the pickers keep the page when the server changes)."""
    return next((item for item in (*NAV_MAIL, *NAV_INSIGHTS, *NAV_MANAGE) if item.view == view), None)


def render(request: Request, template: str, context: dict[str, Any], status: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    body = _ENV.get_template(template).render(request=request, **context)
    response = HTMLResponse(body, status_code=status, headers=headers)
    response.headers["Vary"] = "HX-Request, Cookie"  # a partial for htmx, the whole page otherwise
    return response


def is_htmx(request: Request) -> bool:
    """An htmx request for a part of the page (not a boosted navigation or a history restore, which want the
    whole page)."""
    headers = request.headers
    return headers.get("hx-request") == "true" and headers.get("hx-boosted") != "true" \
        and headers.get("hx-history-restore-request") != "true"
