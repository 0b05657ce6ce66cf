"""The inbound mail pages (issue 16): a server's received messages (status, from, subject, mailbox hash; found
as `GET /messages/inbound` finds them), one message with its parsed fields and its posts to the InboundHookUrl
(each attempt with the hook's answer), and the two actions of docs/postmark-api.md §4.6: bypass a Blocked
message's rules, retry a Failed one — through services/inbound.py, as the API's `PUT …/bypass` and `…/retry`.

The message's HTML is shown as its source text, never rendered: inbound mail comes from anyone.
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
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.activity import checked_offset
from posthouse.server.services.inbound import INBOUND_STREAM, InboundService

PAGE_SIZE = 50
STATUSES = ("queued", "scheduled", "processed", "blocked", "failed")
_FILTERS = ("status", "from", "recipient", "subject", "mailboxhash")
DONE = {"bypassed": "bypassed its rules and is queued to be posted.", "retried": "is queued to be posted again."}


def _service(request: Request) -> InboundService:
    service = state_of(request).inbound
    if service is None:
        raise NotFoundError(0, "Inbound mail is not served here.", 404)
    return service


async def inbound_page(request: Request) -> Response:
    service = _service(request)
    server = await server_of(request)
    stream = await stream_of(request, server)
    q = request.query_params
    if stream != INBOUND_STREAM:  # a server's inbound mail is its inbound stream's, whichever stream was picked
        return RedirectResponse(server_url(server.id, INBOUND_STREAM, "inbound")
                                + (f"?{request.url.query}" if request.url.query else ""), 303)
    values = {name: q.get(name, "").strip() for name in _FILTERS}
    offset = checked_offset(q.get("offset"))
    found, error = None, None
    try:
        found = await service.page(server.id, status=values["status"] or None, sender=values["from"],
                                   recipient=values["recipient"], subject=values["subject"],
                                   mailbox_hash=values["mailboxhash"], offset=offset, count=PAGE_SIZE)
    except ApiError as exc:  # a status that is none of Postmark's, an offset past the search's window
        error = exc.message

    def query(at: int) -> str:
        return urlencode([*((k, v) for k, v in values.items() if v), *([("offset", str(at))] if at else [])])

    context: dict[str, Any] = {
        "server_id": server.id, "stream_id": stream, "base": server_url(server.id, stream, "inbound"),
        "found": found, "error": error, "values": values, "statuses": STATUSES, "offset": offset,
        "page_size": PAGE_SIZE, "query": query, "filtered": any(values.values())}
    return render(request, "inbound.html", {**await layout(request, server=server, stream=stream, view="inbound"),
                                            **context}, status=400 if error else 200)


async def _detail(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    service = _service(request)
    server = await server_of(request)
    view = await service.view(server.id, str(request.path_params["message_id"]))
    done = request.query_params.get("done", "")
    base = f"/ui/servers/{server.id}/inbound/{view.details.message_id}"
    context = {"server_id": server.id, "view": view, "m": view.details, "error": error, "base": base,
               "notice": f"The message {DONE[done]}" if done in DONE else None,
               "list_url": server_url(server.id, INBOUND_STREAM, "inbound")}
    return render(request, "inbound_message.html", {
        **await layout(request, server=server, stream=INBOUND_STREAM, view="inbound"), **context}, status=status)


async def inbound_message(request: Request) -> Response:
    return await _detail(request)


async def _act(request: Request, action: str) -> Response:
    service = _service(request)
    server = await server_of(request)
    message_id = str(request.path_params["message_id"])
    view = await service.view(server.id, message_id)  # 404 for a message the server did not receive
    try:
        await (service.bypass if action == "bypass" else service.retry)(server.id, message_id)
    except NotFoundError:  # it is there, but not Blocked (bypass) or not Failed (retry): said on its page
        what = "Only a blocked message can bypass its rules" if action == "bypass" else \
            "Only a failed message can be retried"
        return await _detail(request, error=f"{what}; this one is {view.details.status.lower()}.", status=400)
    done = "bypassed" if action == "bypass" else "retried"
    return RedirectResponse(f"/ui/servers/{server.id}/inbound/{view.details.message_id}?done={done}", 303)


async def bypass(request: Request) -> Response:
    return await _act(request, "bypass")


async def retry(request: Request) -> Response:
    return await _act(request, "retry")


ROUTES = [
    Route("/ui/servers/{server_id}/streams/{stream}/inbound", inbound_page, methods=["GET"]),
    Route("/ui/servers/{server_id}/inbound/{message_id}", inbound_message, methods=["GET"]),
    Route("/ui/servers/{server_id}/inbound/{message_id}/bypass", bypass, methods=["POST"]),
    Route("/ui/servers/{server_id}/inbound/{message_id}/retry", retry, methods=["POST"]),
]
