"""Opens and clicks end to end: the real `posthouse serve` with its tracking listener, the pixel fetched and a
link followed with httpx to a landing page on loopback, the events in the message's details, and the Open and
Click webhooks arriving (signed) at a loopback receiver. The first test takes its URLs from the mail as a
relay received it (the whole pipeline); the others make tokens with tests/tracking_helpers.py."""

from __future__ import annotations

import html.parser
import http.server
import threading
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from functools import partial
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from integration.smtp_peers import RecordingSink
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


class _Urls(html.parser.HTMLParser):
    """The image sources and link targets of an HTML body, as a mail client reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img" and found.get("src"):
            self.images.append(found["src"] or "")
        if tag == "a" and found.get("href"):
            self.links.append(found["href"] or "")


def test_a_sent_message_is_opened_and_clicked_through_the_urls_it_was_delivered_with(
        tmp_path: Path, database_url: str, landing: str) -> None:
    """Send with tracking through the API, take the delivered copy from the relay, load its pixel and follow
    its link as a mail client and browser would: the open and the click are in the message's details, the
    Open webhook arrives, and the link leads to the page the sender linked."""
    target = f"{landing}/welcome.html?from=mail&n=1"
    with RecordingSink() as sink, WebhookReceiver() as receiver, \
            ServerProcess(tmp_path / "data", database_url, delivery="relay", relay_url=f"smtp://127.0.0.1:{sink.port}",
                          env=FAST) as server, server.client() as api:
        hook = api.post("/webhooks", json={"Url": receiver.url, "Triggers": {"Open": {"Enabled": True}}})
        assert hook.status_code == 200, hook.text
        answer = api.post("/email", json={
            "From": "app@example.com", "To": "ann@example.com", "Subject": "Welcome", "TrackOpens": True,
            "TrackLinks": "HtmlAndText", "HtmlBody": f"<html><body><p>Hi <a href=\"{target.replace('&', '&amp;')}\">"
            "start here</a></p></body></html>", "TextBody": f"Hi, start here: {target}"})
        assert answer.status_code == 200, answer.text
        message_id = answer.json()["MessageID"]
        wait_for(lambda: sink.messages, timeout=15)
        delivered = BytesParser(policy=policy.default).parsebytes(sink.messages[0].data)
        urls = _Urls()
        urls.feed(delivered.get_body(("html",)).get_content())  # type: ignore[union-attr]
        [pixel_url], [link_url] = urls.images, urls.links
        assert pixel_url.startswith(f"{server.tracking_url}/o/") and link_url.startswith(f"{server.tracking_url}/c/")
        text = delivered.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert target not in text and f"{server.tracking_url}/c/" in text

        pixel = httpx.get(pixel_url, headers={"User-Agent": APPLE_MAIL}, timeout=10)
        assert pixel.status_code == 200 and pixel.content.startswith(b"GIF89a")
        click = httpx.get(link_url, headers={"User-Agent": CHROME}, timeout=10)
        assert click.status_code == 302 and click.headers["location"] == target
        page = httpx.get(link_url, headers={"User-Agent": CHROME}, timeout=10, follow_redirects=True)
        assert page.text == "<h1>Welcome</h1>"

        def timeline() -> list[str] | None:
            events = api.get(f"/messages/outbound/{message_id}/details").json()["MessageEvents"]
            found = [e["Type"] for e in events if e["Type"] in ("Opened", "LinkClicked")]
            return found if len(found) == 2 else None

        assert wait_for(timeline, timeout=15) == ["Opened", "LinkClicked"]
        receiver.wait(lambda: receiver.of_type("Open"))
        opened = receiver.of_type("Open")[0].json
        assert (opened["MessageID"], opened["Recipient"], opened["FirstOpen"]) == (message_id, "ann@example.com", True)
        # What the sender wrote is what the API shows: no pixel, the original link.
        details = api.get(f"/messages/outbound/{message_id}/details").json()
        assert target.replace("&", "&amp;") in details["HtmlBody"] and "/o/" not in details["HtmlBody"]


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
