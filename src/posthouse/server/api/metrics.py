"""`GET /metrics` (Prometheus text format) and `GET /healthz`, as a bare ASGI app: mounted on the API listener,
and alone on the `metrics_http` listener of a process without the api role (a worker node).

Who may read it: anyone, unless `metrics_allowed_networks` names networks (others hear 403) or
`metrics_token` is set (then `Authorization: Bearer <token>`, else 401). The answers here are plain text, not
Postmark's error envelope: the readers are Prometheus and curl, not Postmark clients.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Sequence

from starlette.types import Receive, Scope, Send

from posthouse.server.config import IPNetwork
from posthouse.server.metrics import CONTENT_TYPE, Metrics
from posthouse.server.services.queue_gauges import QueueGauges

_TEXT = b"text/plain; charset=utf-8"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _answer(send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = (),
                  content_type: bytes = _TEXT, head: bool = False) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": b"" if head else body})


class MetricsApp:
    def __init__(self, metrics: Metrics, gauges: QueueGauges | None = None, *, token: str = "",
                 networks: Sequence[IPNetwork] = (), ready: Callable[[], bool] = lambda: True) -> None:
        self.metrics = metrics
        self.gauges = gauges
        self.token = token.encode()
        self.networks = tuple(networks)
        self.ready = ready

    def _allowed_client(self, scope: Scope) -> bool:
        if not self.networks:
            return True
        peer = scope.get("client")
        try:
            address = ipaddress.ip_address((peer[0] if peer else "").partition("%")[0])
        except ValueError:
            return False  # a Unix socket or an unknown peer: not in any network
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def _authorized(self, scope: Scope) -> bool:
        if not self.token:
            return True
        scheme, _, credentials = (_header(scope, b"authorization") or b"").partition(b" ")
        # Compared in constant time: the token is a secret (RFC 6750 §2.1 names the scheme case-insensitively).
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        head = method == "HEAD"
        if path not in ("/metrics", "/healthz"):
            await _answer(send, 404, b"Not found\n", head=head)
            return
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"Method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        if path == "/healthz":
            ok = self.ready()
            await _answer(send, 200 if ok else 503, b'{"status": "ok"}' if ok else b'{"status": "starting"}',
                          content_type=b"application/json", head=head)
            return
        if not self._allowed_client(scope):
            await _answer(send, 403, b"Forbidden: this address may not read metrics (metrics_allowed_networks)\n",
                          head=head)
            return
        if not self._authorized(scope):
            await _answer(send, 401, b"Unauthorized: send Authorization: Bearer <metrics_token>\n",
                          [(b"www-authenticate", b'Bearer realm="posthouse-metrics"')], head=head)
            return
        if self.gauges is not None:
            await self.gauges.refresh()
        await _answer(send, 200, self.metrics.render(), content_type=CONTENT_TYPE.encode(), head=head)
