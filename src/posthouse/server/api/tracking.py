"""The tracking listener: the open pixel (`GET /o/{token}`), tracked links (`GET /c/{token}`) and `/healthz`.

It is a separate ASGI application on its own address (setting `tracking_http`, public as
`tracking_base_url`), so the API's routing, authentication and JSON errors stay out of the hot path and
the API need not be exposed where mail readers reach. It is a bare ASGI callable (no Starlette request
objects): each answer is a fixed set of headers, and the work is services/tracking.py's.

- `/o/{token}`: always the 43-byte transparent GIF, `Cache-Control: no-store` (so a re-open fetches it
  again). A token this installation did not sign is answered the same way and not recorded: a broken
  image in someone's mail helps nobody, and the answer tells a prober nothing.
- `/c/{token}`: `302` to the link that was signed, or `404` for a tampered, made-up or unknown token.
  The target always comes from the message's stored links, never from the request (no open redirect).
- `HEAD` gets the same status and headers and records nothing: link checkers and scanners probe with
  HEAD; a person's mail client or browser fetches with GET.

The client address is the connection's peer, or, when the peer is one of `tracking_trusted_proxies`
(a reverse proxy terminating TLS in front of the listener), the address that proxy appended to
`X-Forwarded-For`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from starlette.types import Receive, Scope, Send

from posthouse.server.config import IPNetwork
from posthouse.server.services.tracking import PIXEL, TrackingService

_PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]
_NOT_FOUND = b"Not found\n"
_NOT_FOUND_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"),
                      (b"content-length", str(len(_NOT_FOUND)).encode()), (b"cache-control", b"no-store")]
_NOT_ALLOWED = b"Method not allowed\n"
_NOT_ALLOWED_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(_NOT_ALLOWED)).encode()), (b"allow", b"GET, HEAD")]
_OK = b'{"status": "ok"}'
_STARTING = b'{"status": "starting"}'


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class TrackingApp:
    def __init__(self, tracking: TrackingService, *, trusted_proxies: Sequence[IPNetwork] = (),
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.tracking = tracking
        self.trusted_proxies = tuple(trusted_proxies)
        self.ready = ready

    def client_address(self, scope: Scope) -> str | None:
        peer = scope.get("client")
        address = peer[0] if peer else None
        if not self.trusted_proxies or address is None:
            return address
        forwarded = _header(scope, b"x-forwarded-for")
        # Walk X-Forwarded-For from the right: each trusted proxy vouches for the address before it.
        hops = [h.strip() for h in forwarded.decode("latin-1").split(",")] if forwarded else []
        while self._is_trusted(address) and hops:
            address = hops.pop()
        return address

    def _is_trusted(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method = scope["method"]
        path: str = scope["path"]
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, _NOT_ALLOWED_HEADERS, _NOT_ALLOWED, method)
            return
        record = method == "GET"
        if path.startswith("/o/"):
            if record:
                user_agent = (_header(scope, b"user-agent") or b"").decode("latin-1")
                await self.tracking.record_open(path[3:], user_agent, self.client_address(scope))
            await _answer(send, 200, _PIXEL_HEADERS, PIXEL, method)
        elif path.startswith("/c/"):
            user_agent = (_header(scope, b"user-agent") or b"").decode("latin-1")
            location = await self.tracking.follow_click(path[3:], user_agent, self.client_address(scope),
                                                        record=record)
            if location is None:
                await _answer(send, 404, _NOT_FOUND_HEADERS, _NOT_FOUND, method)
            else:
                await _answer(send, 302, [(b"location", location.encode("ascii")), (b"content-length", b"0"),
                                          (b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer")],
                              b"", method)
        elif path == "/healthz":
            ok = self.ready()
            body = _OK if ok else _STARTING
            await _answer(send, 200 if ok else 503, [(b"content-type", b"application/json"),
                                                     (b"content-length", str(len(body)).encode())], body, method)
        else:
            await _answer(send, 404, _NOT_FOUND_HEADERS, _NOT_FOUND, method)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, method: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def create_tracking_app(tracking: TrackingService, *, trusted_proxies: Sequence[IPNetwork] = (),
                        ready: Callable[[], bool] = lambda: True) -> TrackingApp:
    return TrackingApp(tracking, trusted_proxies=trusted_proxies, ready=ready)
