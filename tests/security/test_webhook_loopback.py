"""A server token cannot read this machine's HTTP services through webhooks.

The threat: webhooks to loopback were always allowed, and the delivery log showed the first 500
characters of every answer. Anyone with a server token could point a webhook at
`http://127.0.0.1:<port>/` (an admin console, a metrics page, another service's API) and read what
it said. Now loopback is refused unless the operator lists it in `webhook_allowed_networks`, and the
delivery log keeps at most 256 bytes of an answer that failed and nothing of one that succeeded.
The real `posthouse serve` posts to a real service on loopback.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import LOOPBACK_WEBHOOKS_ENV, ServerProcess, wait_for

FAST = {"POSTHOUSE_POLL_INTERVAL": "200ms", "POSTHOUSE_WEBHOOK_RETRY_SCHEDULE": "300ms",
        "POSTHOUSE_WEBHOOK_TIMEOUT": "2s"}
MESSAGE = {"From": "app@example.com", "To": "user@example.com", "Subject": "Hello", "TextBody": "Hi"}
SECRET_PAGE = b"<html><h1>Internal admin</h1>" + b"<p>secret row</p>" * 2000 + b"</html>"


class LocalService:
    """An HTTP service on loopback that answers every POST with `status` and a long page."""

    def __init__(self, status: int) -> None:
        service = self
        self.posts = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                service.posts += 1
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(SECRET_PAGE)))
                self.end_headers()
                self.wfile.write(SECRET_PAGE)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/admin"

    def __enter__(self) -> LocalService:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def create_webhook(server: ServerProcess, url: str) -> Any:
    with server.client() as client:
        return client.post("/webhooks", json={"Url": url, "Triggers": {"Delivery": {"Enabled": True}}})


def first_attempt(server: ServerProcess, webhook_id: int) -> dict[str, Any]:
    def attempt() -> dict[str, Any] | None:
        with server.client() as client:
            log = client.get(f"/webhooks/{webhook_id}/deliveries").json()
        deliveries = log["Deliveries"]
        return deliveries[0]["History"][0] if deliveries and deliveries[0]["History"] else None

    return wait_for(attempt, timeout=15)  # type: ignore[no-any-return]


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "data", database_url, env=FAST) as process:
        yield process


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/admin", "http://localhost:{port}/admin",
                                 "http://[::1]:{port}/admin", "http://2130706433:{port}/admin",
                                 "http://１２７。０。０。１:{port}/admin"])
def test_webhooks_to_loopback_are_refused_by_default(server: ServerProcess, url: str) -> None:
    with LocalService(200) as service:
        port = service.url.split(":")[2].split("/")[0]
        answer = create_webhook(server, url.format(port=port))
        assert answer.status_code == 422, answer.text
        assert answer.json()["ErrorCode"] == 1354 and "loopback" in answer.json()["Message"]
        with server.client() as client:
            edited = client.put("/server", json={"DeliveryHookUrl": url.format(port=port)})
            assert (edited.status_code, edited.json()["ErrorCode"]) == (422, 1354)
            assert client.post("/email", json=MESSAGE).status_code == 200
    assert service.posts == 0


@pytest.mark.parametrize(("status", "excerpt_bytes"), [(404, 256), (200, 0)])
def test_when_loopback_is_allowed_the_log_shows_little_of_the_answer(tmp_path: Path, database_url: str, status: int,
                                                                     excerpt_bytes: int) -> None:
    env = {**FAST, **LOOPBACK_WEBHOOKS_ENV}
    with ServerProcess(tmp_path / "data", database_url, env=env) as server, LocalService(status) as service:
        answer = create_webhook(server, service.url)
        assert answer.status_code == 200, answer.text
        with server.client() as client:
            assert client.post("/email", json=MESSAGE).status_code == 200
        attempt = first_attempt(server, answer.json()["ID"])
        assert attempt["StatusCode"] == status
        assert attempt["ResponseExcerpt"].encode() == SECRET_PAGE[:excerpt_bytes]
