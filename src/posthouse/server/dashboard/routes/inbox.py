"""The sandbox inbox: in sandbox delivery (the installation's, or a server whose delivery type is Sandbox),
the mail a stream captured, listed like a mail client's inbox beside the selected message.

A developer running `make run` sends from their application and reads the result here: the list on the
left (newest first, searchable by recipient and subject), the selected message on the right with its HTML
in the same sandboxed frame the message page uses, and a link to its full page.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from posthouse.server.dashboard.rendering import is_htmx, layout, render
from posthouse.server.dashboard.routes.activity import LIVE_SECONDS
from posthouse.server.dashboard.routes.scope import server_of, server_url, stream_of
from posthouse.server.dashboard.sessions import state_of
from posthouse.server.errors import NotFoundError
from posthouse.server.services.activity import checked_offset


async def inbox(request: Request) -> Response:
    state = state_of(request)
    server = await server_of(request)
    stream = await stream_of(request, server)
    q = request.query_params
    recipient = q.get("recipient", "").strip() or None
    subject = q.get("subject", "").strip() or None
    offset = checked_offset(q.get("offset"))
    page = await state.activity.inbox(server.id, stream, recipient=recipient, subject=subject, offset=offset)
    selected_id = q.get("message", "").strip()
    if not selected_id and page.messages:
        selected_id = page.messages[0].message_id
    selected = None
    if selected_id:
        try:
            selected = await state.activity.message(server.id, selected_id)
        except NotFoundError:
            selected = None
    base = server_url(server.id, stream, "inbox")

    def query(**changes: object) -> str:
        values = {"recipient": recipient, "subject": subject, "offset": offset or None, **changes}
        return urlencode([(k, str(v)) for k, v in values.items() if v])

    context = {"server_id": server.id, "stream_id": stream, "page": page, "recipient": recipient or "",
               "subject": subject or "", "selected": selected, "base": base, "query": query,
               "live_seconds": LIVE_SECONDS,
               "sandboxed_here": state.sandbox_all or server.settings.get("delivery_type") == "Sandbox"}
    if is_htmx(request):
        return render(request, "_inbox_list.html", context)
    return render(request, "inbox.html", {**await layout(request, server=server, stream=stream, view="inbox"),
                                          **context})


ROUTES = [
    Route("/ui/servers/{server_id}/streams/{stream}/inbox", inbox, methods=["GET"]),
]
