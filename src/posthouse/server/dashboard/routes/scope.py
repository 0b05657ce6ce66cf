"""The server and stream a dashboard URL names (`/ui/servers/{server_id}/streams/{stream}/…`), checked."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from posthouse.server.dashboard.sessions import state_of
from posthouse.server.errors import NotFoundError

_MAX_ID = 2**63 - 1


async def server_of(request: Request) -> Any:
    """The server named by the path's `server_id` (its record from the account service); 404 if none."""
    text = str(request.path_params.get("server_id", ""))
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > _MAX_ID:
        raise NotFoundError(609, f"There is no server {text!r}.", 404)
    return await state_of(request).accounts.get_server(int(text))


async def stream_of(request: Request, server: Any) -> str:
    """The path's stream, if the server has it; 404 otherwise."""
    stream = str(request.path_params.get("stream", ""))
    if stream not in await state_of(request).accounts.streams(server.id):
        raise NotFoundError(1226, f"The server has no stream {stream!r}.", 404)
    return stream


def server_url(server_id: int, stream: str, view: str) -> str:
    return f"/ui/servers/{server_id}/streams/{stream}/{view}"
