"""The activity list: a server's messages in a stream, newest first, with Postmark's filters (status,
recipient, tag, date range, subject), kept live by polling; and the entry points that lead there.

Live updates poll (htmx, every 5 s, the first page only) rather than stream server-sent events: a poll is
the same indexed query any node answers from the database, where SSE would hold a connection per open tab
against the listener's connection cap and idle deadlines, and would need a change feed between nodes that
SQLite does not have. At a page a poll, one viewer costs a query of a few milliseconds every 5 s.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from posthouse.server.dashboard.rendering import is_htmx, layout, nav_item, render
from posthouse.server.dashboard.routes.scope import server_of, server_url, stream_of
from posthouse.server.dashboard.sessions import state_of
from posthouse.server.errors import ApiError
from posthouse.server.services.activity import STATUS_CHOICES, ActivityFilter, checked_offset

LIVE_SECONDS = 5
# What the pickers may lead to; D2 adds its views.
_VIEWS = ("activity", "inbox", "stats", "suppressions", "bounces", "inbound")


async def home(request: Request) -> Response:
    """The first server's activity; a page that says how to make one when there is none."""
    _, servers = await state_of(request).accounts.list_servers(0, 1, None)
    if not servers:
        return render(request, "no_servers.html", await layout(request))
    return RedirectResponse(server_url(servers[0].id, "outbound", "activity"), 303)


async def switch(request: Request) -> Response:
    """Where the server and stream pickers lead (a GET form, so they work without JavaScript)."""
    query = request.query_params
    view = query.get("view") if query.get("view") in _VIEWS else "activity"
    server_text = query.get("server", "")
    if not server_text.isdigit() or len(server_text) > 19:
        return RedirectResponse("/ui/", 303)
    server = await state_of(request).accounts.get_server(int(server_text))
    streams = await state_of(request).accounts.streams(server.id)
    stream = query.get("stream", "")
    if stream not in streams:
        stream = "outbound" if "outbound" in streams else next(iter(streams), "outbound")
    item = nav_item(str(query.get("view", "")))
    if item is not None and item.view not in _VIEWS:  # a page of D2's navigation (rendering.NAV_MANAGE, …)
        return RedirectResponse(item.href(server.id, stream), 303)
    return RedirectResponse(server_url(server.id, stream, str(view)), 303)


def _filters(request: Request, stream: str) -> ActivityFilter:
    q = request.query_params

    def text(name: str) -> str | None:
        value = q.get(name, "").strip()
        return value or None

    return ActivityFilter(stream=stream, status=text("status"), recipient=text("recipient"), tag=text("tag"),
                          subject=text("subject"), from_date=text("fromdate"), to_date=text("todate"))


def _query(f: ActivityFilter, offset: int = 0) -> str:
    pairs = [(name, value) for name, value in (
        ("status", f.status), ("recipient", f.recipient), ("tag", f.tag), ("subject", f.subject),
        ("fromdate", f.from_date), ("todate", f.to_date)) if value]
    if offset:
        pairs.append(("offset", str(offset)))
    return urlencode(pairs)


async def activity(request: Request) -> Response:
    state = state_of(request)
    server = await server_of(request)
    stream = await stream_of(request, server)
    filters = _filters(request, stream)
    offset = checked_offset(request.query_params.get("offset"))
    base = server_url(server.id, stream, "activity")
    page, error = None, None
    try:
        page = await state.activity.page(server.id, filters, offset)
    except ApiError as exc:  # a filter the API would refuse: said next to the form
        error = exc.message
    context = {"server_id": server.id, "stream_id": stream, "filters": filters, "page": page, "error": error,
               "base": base, "query": lambda offset=0: _query(filters, offset), "statuses": STATUS_CHOICES,
               "live_seconds": LIVE_SECONDS}
    status = 400 if error else 200
    if is_htmx(request):
        return render(request, "_activity_results.html", context, status=status)
    return render(request, "activity.html", {**await layout(request, server=server, stream=stream, view="activity"),
                                             **context}, status=status)


ROUTES = [
    Route("/ui/", home, methods=["GET"]),
    Route("/ui/switch", switch, methods=["GET"]),
    Route("/ui/servers/{server_id}/streams/{stream}/activity", activity, methods=["GET"]),
]
