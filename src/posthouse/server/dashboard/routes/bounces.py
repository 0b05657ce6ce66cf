"""The bounces pages: a stream's bounces (newest first, by type, address and whether the address is inactive),
one bounce with its details and its dump (the raw report as received), and reactivating its address — Postmark's
`PUT /bounces/{id}/activate` through the bounce service (docs/postmark-api.md §5): only a bounce that allows it
(`CanActivate`), never over a spam complaint's suppression.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from posthouse.server.dashboard.rendering import layout, render
from posthouse.server.dashboard.routes.scope import server_of, server_url, stream_of
from posthouse.server.dashboard.sessions import state_of
from posthouse.server.domain.statuses import BounceType
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.activity import checked_offset
from posthouse.server.services.bounces import BounceService

PAGE_SIZE = 50
TYPES = tuple(sorted(t.type_name for t in BounceType))
_INACTIVE = {"yes": True, "no": False}


def _service(request: Request) -> BounceService:
    service = state_of(request).bounces
    if service is None:
        raise NotFoundError(0, "Bounces are not served here.", 404)
    return service


async def bounces_page(request: Request) -> Response:
    service = _service(request)
    server = await server_of(request)
    stream = await stream_of(request, server)
    q = request.query_params
    type_name, email, inactive = q.get("type", "").strip(), q.get("email", "").strip(), q.get("inactive", "")
    offset = checked_offset(q.get("offset"))
    found, error = None, None
    try:
        found = await service.page(server.id, stream=stream, type_name=type_name or None, email=email or None,
                                   inactive=_INACTIVE.get(inactive), offset=offset, count=PAGE_SIZE)
    except ApiError as exc:  # a type that is none of Postmark's, an offset past the search's window
        error = exc.message

    def query(at: int) -> str:
        pairs = [(k, v) for k, v in (("type", type_name), ("email", email), ("inactive", inactive)) if v]
        return urlencode([*pairs, *([("offset", str(at))] if at else [])])

    context: dict[str, Any] = {
        "server_id": server.id, "stream_id": stream, "base": server_url(server.id, stream, "bounces"),
        "found": found, "error": error, "types": TYPES, "type_name": type_name, "email": email, "inactive": inactive,
        "offset": offset, "page_size": PAGE_SIZE, "query": query}
    return render(request, "bounces.html", {**await layout(request, server=server, stream=stream, view="bounces"),
                                            **context}, status=400 if error else 200)


async def _detail(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    service = _service(request)
    server = await server_of(request)
    bounce = await service.get(server.id, str(request.path_params["bounce_id"]))
    done = request.query_params.get("done") == "activated"
    context = {"server_id": server.id, "bounce": bounce, "error": error, "done": done,
               "base": f"/ui/servers/{server.id}/bounces/{bounce.id}",
               "list_url": server_url(server.id, bounce.message_stream, "bounces")}
    return render(request, "bounce.html", {
        **await layout(request, server=server, stream=bounce.message_stream, view="bounces"), **context},
        status=status)


async def bounce_page(request: Request) -> Response:
    return await _detail(request)


async def activate(request: Request) -> Response:
    service = _service(request)
    server = await server_of(request)
    bounce_id = str(request.path_params["bounce_id"])
    try:
        answer = await service.activate(server.id, bounce_id)
    except NotFoundError:
        raise
    except ApiError as exc:  # Postmark's 1003: this bounce, or this address, cannot be reactivated
        return await _detail(request, error=exc.message, status=400)
    return RedirectResponse(f"/ui/servers/{server.id}/bounces/{answer.bounce.id}?done=activated", 303)


ROUTES = [
    Route("/ui/servers/{server_id}/streams/{stream}/bounces", bounces_page, methods=["GET"]),
    Route("/ui/servers/{server_id}/bounces/{bounce_id}", bounce_page, methods=["GET"]),
    Route("/ui/servers/{server_id}/bounces/{bounce_id}/activate", activate, methods=["POST"]),
]
