"""Servers and their API tokens (docs/postmark-api.md §8.3): the list, a new server, a server's settings, and
its tokens — a new one added, or all of them rotated (`AccountService.rotate_token`, issue 17).

A token is shown once: in the answer to the POST that made it, never on a later page (only the SHA-256 and the
last four characters are stored). That answer is a page, not a redirect, so the token is never in a URL, a
history entry or a log line. A rotated-out token is refused at once on this node and within the token cache
(5 s) on others; the form offers a grace period for the clients still using it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from posthouse import wire
from posthouse.server.dashboard.rendering import render
from posthouse.server.dashboard.routes.manage import account_page, checked, field, notice, see_other, server_page
from posthouse.server.dashboard.routes.scope import server_of
from posthouse.server.dashboard.sessions import state_of
from posthouse.server.domain.statuses import TRACK_LINKS_VALUES
from posthouse.server.errors import ApiError
from posthouse.server.services.accounts import COLORS

SERVERS_LISTED = 500  # one page: the most AccountService.list_servers gives
DELIVERY_TYPES = ("Live", "Sandbox")
# How long the tokens a rotation replaces keep working (seconds), as the form offers it.
GRACE_CHOICES = (("0", "Now"), ("3600", "In 1 hour"), ("86400", "In 24 hours"))
_TRACK_LINK_LABELS = {"None": "Off", "HtmlAndText": "In HTML and text", "HtmlOnly": "In HTML only",
                      "TextOnly": "In text only"}


def _choices() -> dict[str, Any]:
    return {"colors": COLORS, "delivery_types": DELIVERY_TYPES, "grace_choices": GRACE_CHOICES,
            "track_links_choices": [(v, _TRACK_LINK_LABELS.get(v, v)) for v in TRACK_LINKS_VALUES]}


def _server_request(request: Request, *, creating: bool) -> wire.ServerRequest:
    """The settings form as the API's request; a retention that is not a whole number is refused here."""
    retention_text = field(request, "retention_days").strip()
    retention = None
    if retention_text:
        if not retention_text.isascii() or not retention_text.isdigit() or len(retention_text) > 6:
            raise ApiError(1620, f"Retention must be a whole number of days, not {retention_text!r}.")
        retention = int(retention_text)
    return wire.ServerRequest(
        name=field(request, "name"), color=field(request, "color") or None,
        delivery_type=(field(request, "delivery_type") or None) if creating else None,
        track_opens=checked(request, "track_opens"), track_links=field(request, "track_links") or None,
        smtp_api_activated=checked(request, "smtp_api_activated"), retention_days=retention)


async def _list_page(request: Request, *, error: str | None = None, status: int = 200,
                     created: Any = None, token: str | None = None, draft: dict[str, Any] | None = None) -> Response:
    _, servers = await state_of(request).accounts.list_servers(0, SERVERS_LISTED, None)
    return render(request, "servers.html", {
        **await account_page(request, "servers"), **_choices(), "all_servers": servers, "error": error,
        "notice": notice(request), "created": created, "new_token": token,
        "token_note": "The new server's API token" if token else None, "draft": draft or {},
        "retention_default": state_of(request).accounts.retention_days({})}, status=status)


async def server_list(request: Request) -> Response:
    return await _list_page(request)


async def server_create(request: Request) -> Response:
    draft = {"name": field(request, "name"), "color": field(request, "color"),
             "delivery_type": field(request, "delivery_type"), "track_opens": checked(request, "track_opens"),
             "track_links": field(request, "track_links"), "retention_days": field(request, "retention_days"),
             "smtp_api_activated": checked(request, "smtp_api_activated")}
    try:
        record, token = await state_of(request).accounts.create_server(_server_request(request, creating=True))
    except ApiError as exc:
        return await _list_page(request, error=exc.message, status=400, draft=draft)
    # The token, once: this answer is the only place it is ever shown.
    return await _list_page(request, created=record, token=token)


async def _settings_page(request: Request, server: Any, *, error: str | None = None, status: int = 200,
                         token: str | None = None, heading: str | None = None) -> Response:
    accounts = state_of(request).accounts
    return render(request, "server_settings.html", {
        **await server_page(request, server, "servers"), **_choices(), "error": error, "notice": notice(request),
        "hints": await accounts.token_hints(server.id), "new_token": token, "token_note": heading,
        "retention_default": accounts.retention_days({}), "settings": server.settings,
        "base": f"/ui/servers/{server.id}"}, status=status)


async def server_settings(request: Request) -> Response:
    return await _settings_page(request, await server_of(request))


async def server_save(request: Request) -> Response:
    server = await server_of(request)
    try:
        await state_of(request).accounts.edit_server(server.id, _server_request(request, creating=False))
    except ApiError as exc:
        server.name = field(request, "name")
        return await _settings_page(request, server, error=exc.message, status=400)
    return see_other(f"/ui/servers/{server.id}/settings", "saved")


async def token_add(request: Request) -> Response:
    server = await server_of(request)
    token = await state_of(request).accounts.create_server_token(server.id)
    return await _settings_page(request, server, token=token,
                                heading="A new token, added: the server's other tokens keep working.")


async def token_rotate(request: Request) -> Response:
    server = await server_of(request)
    grace = dict(GRACE_CHOICES).get(field(request, "grace"), None)
    seconds = int(field(request, "grace")) if grace is not None else 0
    token, replaced = await state_of(request).accounts.rotate_token(server.id, grace_seconds=seconds)
    when = "now" if seconds == 0 else (grace or "").lower()
    note = (f"Rotated: {replaced} token{'s' if replaced != 1 else ''} replaced, refused {when}"
            + (" (other nodes within 5 seconds)." if seconds == 0 else "."))
    return await _settings_page(request, server, token=token, heading=note)


ROUTES = [
    Route("/ui/servers", server_list, methods=["GET"]),
    Route("/ui/servers", server_create, methods=["POST"]),
    Route("/ui/servers/{server_id}/settings", server_settings, methods=["GET"]),
    Route("/ui/servers/{server_id}/settings", server_save, methods=["POST"]),
    Route("/ui/servers/{server_id}/tokens", token_add, methods=["POST"]),
    Route("/ui/servers/{server_id}/tokens/rotate", token_rotate, methods=["POST"]),
]
