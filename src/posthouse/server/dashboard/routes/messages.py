"""The message page: summary, per-recipient state, the timeline, opens and clicks, the HTML in a sandboxed
frame, the text, the headers and the raw source.

The HTML is never part of the page: the frame loads it from `…/html` with `sandbox=""` (no scripts, an
opaque origin that reaches none of the dashboard's cookies or pages), and that response carries a policy of
its own that also blocks every load from elsewhere — remote images are how a sender learns that mail was
read — unless the viewer asked for remote content (`?remote=1`, the "Load remote content" link). The policy's
`sandbox` directive applies even when the URL is opened on its own, outside the frame.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from posthouse.server.dashboard.rendering import layout, render
from posthouse.server.dashboard.routes.scope import server_of
from posthouse.server.dashboard.sessions import state_of

RAW_SHOWN = 256 * 1024  # characters of the raw source shown in the page; the rest is behind the "raw" link

# No scripts, nothing fetched; inline styles and images carried in the message (data:) only.
FRAME_POLICY = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
                "frame-ancestors 'self'; form-action 'none'; base-uri 'none'")
# Asked for: images, styles, fonts and media from anywhere; still no scripts, forms or plugins.
FRAME_POLICY_REMOTE = ("sandbox; default-src 'none'; style-src 'unsafe-inline' http: https:; "
                       "img-src data: http: https:; font-src data: http: https:; media-src http: https:; "
                       "frame-ancestors 'self'; form-action 'none'; base-uri 'none'")
_NO_HTML = "<!doctype html><p style=\"font-family:sans-serif;color:#555\">This message has no HTML part.</p>"


def _message_id(request: Request) -> str:
    return str(request.path_params["message_id"])


async def message_page(request: Request) -> Response:
    server = await server_of(request)
    view = await state_of(request).activity.message(server.id, _message_id(request))
    remote = request.query_params.get("remote") == "1"
    base = f"/ui/servers/{server.id}/messages/{view.summary.message_id}"
    context = {"message": view, "summary": view.summary, "base": base, "remote": remote,
               "frame_url": f"{base}/html" + ("?remote=1" if remote else ""),
               "raw_shown": view.raw[:RAW_SHOWN], "raw_cut": len(view.raw) > RAW_SHOWN}
    return render(request, "message.html", {
        **await layout(request, server=server, stream=view.summary.message_stream, view="activity"), **context})


async def message_html(request: Request) -> Response:
    server = await server_of(request)
    html = await state_of(request).activity.html(server.id, _message_id(request))
    policy = FRAME_POLICY_REMOTE if request.query_params.get("remote") == "1" else FRAME_POLICY
    return HTMLResponse(html if html is not None else _NO_HTML, headers={
        "Content-Security-Policy": policy, "X-Frame-Options": "SAMEORIGIN", "Referrer-Policy": "no-referrer"})


async def message_raw(request: Request) -> Response:
    server = await server_of(request)
    raw = await state_of(request).activity.raw(server.id, _message_id(request))
    return PlainTextResponse(raw, headers={"Content-Security-Policy": "sandbox; default-src 'none'",
                                                "Content-Disposition": "inline"})


ROUTES = [
    Route("/ui/servers/{server_id}/messages/{message_id}", message_page, methods=["GET"]),
    Route("/ui/servers/{server_id}/messages/{message_id}/html", message_html, methods=["GET"]),
    Route("/ui/servers/{server_id}/messages/{message_id}/raw", message_raw, methods=["GET"]),
]
