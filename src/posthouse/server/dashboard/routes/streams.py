"""A server's message streams (docs/postmark-api.md §8.1): the list, a new stream, archive and unarchive —
through `AccountService`, the stream methods `/message-streams` uses. An archived stream takes no mail
(ErrorCode 1235) and leaves the stream picker; its messages stay, and unarchiving brings it back."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from posthouse import wire
from posthouse.server.dashboard.rendering import render
from posthouse.server.dashboard.routes.manage import field, notice, see_other, server_page
from posthouse.server.dashboard.routes.scope import server_of, stream_of
from posthouse.server.dashboard.sessions import state_of
from posthouse.server.errors import ApiError

STREAM_TYPES = ("Transactional", "Broadcasts")  # what a new stream may be (the inbound one comes with the server)


def _base(server_id: int) -> str:
    return f"/ui/servers/{server_id}/streams"


async def _page(request: Request, server: Any, *, error: str | None = None, status: int = 200,
                draft: dict[str, str] | None = None) -> Response:
    streams = sorted((await state_of(request).accounts.streams(server.id, fresh=True)).values(),
                     key=lambda s: (s.archived_at is not None, s.created_at, s.id))
    return render(request, "streams.html", {
        **await server_page(request, server, "streams"), "all_streams": streams, "base": _base(server.id),
        "types": STREAM_TYPES, "error": error, "notice": notice(request), "draft": draft or {}}, status=status)


async def stream_list(request: Request) -> Response:
    return await _page(request, await server_of(request))


async def stream_create(request: Request) -> Response:
    server = await server_of(request)
    draft = {name: field(request, name) for name in ("id", "name", "stream_type", "description")}
    try:
        await state_of(request).accounts.create_stream(server.id, wire.MessageStreamRequest(
            id=draft["id"], name=draft["name"], message_stream_type=draft["stream_type"],
            description=draft["description"] or None))
    except ApiError as exc:
        return await _page(request, server, error=exc.message, status=400, draft=draft)
    return see_other(_base(server.id), "created", stream=draft["id"].strip())


async def _change(request: Request, archive: bool) -> Response:
    server = await server_of(request)
    stream = await stream_of(request, server)
    accounts = state_of(request).accounts
    try:
        if archive:
            await accounts.archive_stream(server.id, stream)
        else:
            await accounts.unarchive_stream(server.id, stream)
    except ApiError as exc:
        return await _page(request, server, error=exc.message, status=400)
    return see_other(_base(server.id), "archived" if archive else "unarchived")


async def stream_archive(request: Request) -> Response:
    return await _change(request, archive=True)


async def stream_unarchive(request: Request) -> Response:
    return await _change(request, archive=False)


ROUTES = [
    Route("/ui/servers/{server_id}/streams", stream_list, methods=["GET"]),
    Route("/ui/servers/{server_id}/streams", stream_create, methods=["POST"]),
    Route("/ui/servers/{server_id}/streams/{stream}/archive", stream_archive, methods=["POST"]),
    Route("/ui/servers/{server_id}/streams/{stream}/unarchive", stream_unarchive, methods=["POST"]),
]
