"""The suppressions page of a server's stream: the addresses it no longer sends to (newest first, found by
address and reason), suppressing one by hand, and reactivating one — through the suppression service the API's
dump, create and delete use, with their rules (docs/postmark-api.md §8.2): a manual suppression has origin
Customer; deleting one reactivates the address's bounces; a spam complaint's suppression cannot be deleted.

The forms post, then lead back to the page (303) with what was done in the URL; a refusal (an address that is
no address, a spam complaint) is shown on the page next to the form, with a 400.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from posthouse.server.dashboard.rendering import layout, render
from posthouse.server.dashboard.routes.scope import server_of, server_url, stream_of
from posthouse.server.dashboard.sessions import form_of, state_of
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.suppressions import (
    DELETED,
    FAILED,
    REASONS,
    SuppressionPage,
    SuppressionService,
    parse_reason,
    suppression_request,
)

DONE = {"suppressed": "is suppressed: this stream sends it nothing until it is reactivated.",
        "reactivated": "is reactivated: this stream sends to it again.",
        "absent": "was not suppressed in this stream; nothing changed."}


def _service(request: Request) -> SuppressionService:
    service = state_of(request).suppressions
    if service is None:
        raise NotFoundError(0, "Suppressions are not served here.", 404)
    return service


async def _page(request: Request, *, error: str | None = None, typed: str = "", status: int = 200) -> Response:
    service = _service(request)
    server = await server_of(request)
    stream = await stream_of(request, server)
    q = request.query_params
    email, reason_text = q.get("email", "").strip(), q.get("reason", "").strip()
    found: SuppressionPage | None = None
    search_error = None
    try:
        found = await service.page(server.id, stream, email=email or None, reason=parse_reason(reason_text))
    except ApiError as exc:  # a reason that is none of Postmark's
        search_error, status = exc.message, 400
    done = q.get("done", "")
    context: dict[str, Any] = {
        "server_id": server.id, "stream_id": stream, "base": server_url(server.id, stream, "suppressions"),
        "found": found, "email": email, "reason": reason_text, "reasons": REASONS,
        "search_error": search_error, "error": error, "typed": typed, "can_reactivate": SuppressionPage.can_reactivate,
        "notice": f"{q.get('address', '')} {DONE[done]}" if done in DONE and q.get("address") else None,
    }
    return render(request, "suppressions.html", {
        **await layout(request, server=server, stream=stream, view="suppressions"), **context}, status=status)


async def suppressions_page(request: Request) -> Response:
    return await _page(request)


def _back(server_id: int, stream: str, done: str, address: str) -> Response:
    query = urlencode({"done": done, "address": address})
    return RedirectResponse(f"{server_url(server_id, stream, 'suppressions')}?{query}", 303)


async def suppress(request: Request) -> Response:
    service = _service(request)
    server = await server_of(request)
    stream = await stream_of(request, server)
    typed = form_of(request).get("email", "").strip()
    if not typed:
        return await _page(request, error="Type the address to suppress.", status=400)
    [result] = (await service.create(server.id, stream, suppression_request(typed))).suppressions
    if result.status == FAILED:
        return await _page(request, error=f"{typed}: {result.message}", typed=typed, status=400)
    return _back(server.id, stream, "suppressed", typed)


async def reactivate(request: Request) -> Response:
    service = _service(request)
    server = await server_of(request)
    stream = await stream_of(request, server)
    typed = form_of(request).get("email", "").strip()
    if not typed:
        return await _page(request, error="Say which address to reactivate.", status=400)
    held = await service.page(server.id, stream, email=typed.lower())
    [result] = (await service.delete(server.id, stream, suppression_request(typed))).suppressions
    if result.status == FAILED:
        return await _page(request, error=f"{typed}: {result.message}", status=400)
    assert result.status == DELETED
    return _back(server.id, stream, "reactivated" if held.entries else "absent", typed)


ROUTES = [
    Route("/ui/servers/{server_id}/streams/{stream}/suppressions", suppressions_page, methods=["GET"]),
    Route("/ui/servers/{server_id}/streams/{stream}/suppressions", suppress, methods=["POST"]),
    Route("/ui/servers/{server_id}/streams/{stream}/suppressions/reactivate", reactivate, methods=["POST"]),
]
