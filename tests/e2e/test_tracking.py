"""Opens and clicks end to end: the real `posthouse serve` with its tracking listener, the pixel fetched and a
link followed with httpx to a landing page on loopback, the events in the message's details, and the Open and
Click webhooks arriving (signed) at a loopback receiver. Tokens come from tests/tracking_helpers.py until link
rewriting puts them into mail."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from posthouse.server.store import open_store_for
from support import LOOPBACK_WEBHOOKS_ENV, ServerProcess, wait_for
from tracking_helpers import APPLE_MAIL, CHROME, TrackedMessage, track
from webhook_receiver import WebhookReceiver

FAST = {"POSTHOUSE_POLL_INTERVAL": "200ms", "POSTHOUSE_WEBHOOK_TIMEOUT": "2s", **LOOPBACK_WEBHOOKS_ENV}


@pytest.fixture
def landing(tmp_path: Path) -> Iterator[str]:
    """A web site on loopback that tracked links lead to."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "welcome.html").write_text("<h1>Welcome</h1>")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "data", database_url, env=FAST) as process:
        yield process


async def tracked(server: ServerProcess, links: list[tuple[int, str, str]]) -> TrackedMessage:
    with server.client() as client:
        answer = client.post("/email", json={
            "From": "app@example.com", "To": "ann@example.com", "Subject": "Welcome", "Tag": "onboarding",
            "HtmlBody": "<p>Hello <a href='x'>there</a></p>", "TrackOpens": True, "TrackLinks": "HtmlOnly"})
    assert answer.status_code == 200, answer.text
    store = open_store_for(server.database_url)
    await store.open()
    try:
        return await track(store, answer.json()["MessageID"], links)
    finally:
        await store.close()


async def test_the_pixel_and_a_link_through_the_real_listener(server: ServerProcess, landing: str) -> None:
    with WebhookReceiver() as receiver, server.client() as api:
        answer = api.post("/webhooks", json={"Url": receiver.url, "Triggers": {
            "Open": {"Enabled": True, "PostFirstOpenOnly": False}, "Click": {"Enabled": True}}})
        assert answer.status_code == 200, answer.text
        secret = answer.json()["Secret"]
        target = f"{landing}/welcome.html?from=mail"
        message = await tracked(server, [(1, target, "HTML")])

        async with httpx.AsyncClient(base_url=server.tracking_url, timeout=10) as reader:
            pixel = await reader.get(f"/o/{message.pixel('ann@example.com')}", headers={"User-Agent": APPLE_MAIL})
            assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
            assert len(pixel.content) == 43 and pixel.content.startswith(b"GIF89a")
            click = await reader.get(f"/c/{message.link('ann@example.com', 1)}", headers={"User-Agent": CHROME})
            assert click.status_code == 302 and click.headers["location"] == target
            followed = await reader.get(f"/c/{message.link('ann@example.com', 1)}", headers={"User-Agent": CHROME},
                                        follow_redirects=True)
            assert followed.status_code == 200 and followed.text == "<h1>Welcome</h1>"
            assert str(followed.url) == target
            token = message.link("ann@example.com", 1)
            tampered = await reader.get(f"/c/{token[:-2]}{'AB' if token[-2:] != 'AB' else 'CD'}")
            assert tampered.status_code == 404 and "location" not in tampered.headers

        def timeline() -> list[tuple[str, str]] | None:
            events = api.get(f"/messages/outbound/{message.message_id}/details").json()["MessageEvents"]
            found = [(e["Type"], e["Details"]["Summary"]) for e in events if e["Type"] in ("Opened", "LinkClicked")]
            return found if len(found) == 2 else None

        assert wait_for(timeline, timeout=15) == [
            ("Opened", f"Email opened with {APPLE_MAIL}"),
            ("LinkClicked", f"Tracked Link '{target}' was clicked from the HTMLBody.")]

        receiver.wait(lambda: receiver.of_type("Open") and receiver.of_type("Click"))
        opened = Webhook(secret).verify(receiver.of_type("Open")[0].body, receiver.of_type("Open")[0].headers)
        assert (opened["Recipient"], opened["MessageID"], opened["FirstOpen"]) == (
            "ann@example.com", message.message_id, True)
        assert (opened["Tag"], opened["Platform"], opened["Client"]["Name"]) == ("onboarding", "Desktop", "Apple Mail")
        clicked = receiver.of_type("Click")
        assert len(clicked) == 1  # the second click of the same link is no unique click
        assert clicked[0].json["OriginalLink"] == target and clicked[0].json["ClickLocation"] == "HTML"


def test_the_tracking_listener_answers_health_and_nothing_else(server: ServerProcess) -> None:
    assert httpx.get(f"{server.tracking_url}/healthz").status_code == 200
    assert httpx.get(f"{server.tracking_url}/email").status_code == 404  # the API is not served here
    assert httpx.get(f"{server.base_url}/o/phtrk0000xxxxxxxxxxxxxxxxxxx").status_code == 404  # nor tracking there
