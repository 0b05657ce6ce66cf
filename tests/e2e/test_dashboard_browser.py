"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against `posthouse serve`.

A user made with `posthouse users create` signs in, the activity list shows the mail sent through the API and
updates as it is delivered, a search narrows it (htmx, with the URL kept), and the message page shows the
timeline (the sandbox's SMTP reply, the Delivery webhook post), the HTML in its sandboxed frame with a remote
image blocked until "Load remote content" is clicked, the headers and the raw source. The layout is checked at
375 px. Screenshots are saved under tests/artifacts/dashboard/ (git-ignored); the README's come from here.

The browser is the system's (`apt-get install chromium`, as .ci/run does), never one Playwright downloads.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import LOOPBACK_WEBHOOKS_ENV, ServerProcess, wait_for
from webhook_receiver import WebhookReceiver

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
EMAIL, PASSWORD = "ops@example.com", "a long operator passphrase"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

# The elements that stick out past the viewport's right edge (what to fix when the layout does not reflow).
WIDE = ("() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
        "window.innerWidth + 0.5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect()"
        ".right)).slice(0, 12)")

# Skipped only where chromium is missing and cannot be had; .ci/run installs it and sets
# POSTHOUSE_REQUIRE_CHROMIUM, so in CI a missing browser is a failure, not a skip.
if not os.access(CHROMIUM, os.X_OK) and os.environ.get("POSTHOUSE_REQUIRE_CHROMIUM") != "1":
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (apt-get install -y chromium)")


class ImageServer:
    """A remote image on loopback that counts who fetched it: the HTML view must not until asked."""

    def __init__(self) -> None:
        self.fetches = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
                        b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/logo.gif"

    def __enter__(self) -> ImageServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def create_user(server: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
    env.update(POSTHOUSE_DATABASE_URL=server.database_url, POSTHOUSE_DATA_DIR=str(server.data_dir))
    done = subprocess.run([sys.executable, "-m", "posthouse.server.cli", "users", "create", EMAIL, "--password-stdin"],
                          input=PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"Created dashboard user {EMAIL}." in done.stdout


def send_mail(server: ServerProcess, image_url: str) -> dict[str, str]:
    """A morning's mail of a small shop; the message ids by name."""
    ids = {}
    with server.client() as api:
        for n in range(9):
            response = api.post("/email", json={
                "From": "Acme Shop <shop@acme.example>", "To": f"customer{n}@example.net",
                "Subject": f"Your receipt #10{40 + n}", "Tag": "receipt", "TextBody": f"Thank you for order {n}.",
                "HtmlBody": f"<p>Thank you for order <b>{n}</b>.</p>", "Metadata": {"order": str(1040 + n)}})
            assert response.status_code == 200, response.text
        welcome = api.post("/email", json={
            "From": "Acme Shop <shop@acme.example>", "To": "Ada Lovelace <ada@example.com>",
            "Cc": "team@acme.example", "Subject": "Welcome aboard, Ada", "Tag": "welcome",
            "HtmlBody": f'<div style="font-family:Georgia,serif;padding:24px;background:#fdf8ef">'
                        f'<img src="{image_url}" alt="Acme logo" width="40" height="40">'
                        '<h1 style="color:#8a3b12">Welcome to Acme, Ada!</h1>'
                        '<p>Your account is ready. <a href="https://acme.example/start">Get started</a>.</p>'
                        '<script>document.body.innerHTML = "scripted"</script></div>',
            "TextBody": "Welcome to Acme, Ada! Your account is ready: https://acme.example/start",
            "Metadata": {"customer": "ada-1815"}})
        assert welcome.status_code == 200, welcome.text
        ids["welcome"] = welcome.json()["MessageID"]
        bounced = api.post("/email", json={
            "From": "shop@acme.example", "To": "HardBounce@bounce-testing.postmarkapp.com",
            "Subject": "Password reset", "Tag": "reset", "TextBody": "Reset it here."})
        assert bounced.status_code == 200, bounced.text
        ids["bounced"] = bounced.json()["MessageID"]

        def all_sent() -> bool:
            found = api.get("/messages/outbound", params={"count": 50, "offset": 0, "status": "queued"}).json()
            return bool(found["TotalCount"] == 0)

        wait_for(all_sent, timeout=30)
    return ids


@pytest.fixture
def browser_context() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="posthouse-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 860}, device_scale_factor=1)
        try:
            yield context
        finally:
            context.close()


def test_sign_in_search_and_the_message_page(tmp_path: Path, database_url: str, browser_context: Any) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = ARTIFACTS / ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    shots.mkdir(exist_ok=True)
    with ImageServer() as image, WebhookReceiver() as receiver, \
            ServerProcess(tmp_path / "data", database_url, env={**LOOPBACK_WEBHOOKS_ENV}) as server:
        create_user(server)
        with server.client() as api:
            hook = api.post("/webhooks", json={"Url": receiver.url, "Triggers": {"Delivery": {"Enabled": True}}})
            assert hook.status_code == 200, hook.text
        ids = send_mail(server, image.url)
        receiver.wait(lambda: len(receiver.of_type("Delivery")) >= 10)
        page = browser_context.new_page()
        console_errors: list[tuple[str, str]] = []  # (where, what)
        page.on("console", lambda m: console_errors.append((m.location.get("url", ""), m.text))
                if m.type == "error" else None)

        # Signing in: the dashboard sends an anonymous visitor to the sign-in page, and back after it.
        page.goto(server.base_url + "/ui/servers/1/streams/outbound/activity")
        assert "/ui/login" in page.url
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in", exact=True).click()
        assert "wrong" in page.get_by_role("alert").inner_text()
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url("**/ui/servers/1/streams/outbound/activity")
        rows = page.locator("table.messages tbody tr")
        assert rows.count() == 11
        assert page.locator("table.messages").get_by_text("Welcome aboard, Ada").is_visible()
        assert page.get_by_text(EMAIL).is_visible()
        page.screenshot(path=str(shots / "activity.png"))

        # Live: a message sent now shows up on the open page without a reload (htmx polls the first page).
        with server.client() as api:
            late = api.post("/email", json={"From": "shop@acme.example", "To": "late@example.org",
                                            "Subject": "Arrived while you watched", "TextBody": "hi"})
            assert late.status_code == 200, late.text
        page.locator("table.messages").get_by_text("Arrived while you watched").wait_for(timeout=15_000)
        assert page.locator("table.messages tbody tr").count() == 12

        # Searching: typing a recipient narrows the list in place, and the URL says so (a link to share).
        page.get_by_label("Recipient").fill("ada@example.com")
        expect(rows).to_have_count(1)
        assert "recipient=ada%40example.com" in page.url
        page.get_by_label("Recipient").fill("")
        page.get_by_label("Tag").fill("receipt")
        expect(rows).to_have_count(9)
        page.get_by_label("Status").select_option("sent")
        page.get_by_label("Tag").fill("reset")
        expect(rows).to_have_count(1)
        assert page.locator("table.messages").get_by_text("Password reset").is_visible()
        page.screenshot(path=str(shots / "search.png"))

        # The message page: the timeline with the receiver's reply and the webhook post, the HTML sandboxed.
        page.goto(server.base_url + "/ui/servers/1/streams/outbound/activity?recipient=ada%40example.com")
        page.locator("table.messages").get_by_role("link", name="Welcome aboard, Ada").click()
        page.wait_for_url(f"**/ui/servers/1/messages/{ids['welcome']}")
        assert "opens off, links off" in page.locator("dl.summary").inner_text()
        timeline = page.locator("ol.timeline")
        assert "Accepted and queued" in timeline.inner_text()
        assert "kept in the sandbox" in timeline.locator(".event-delivered").first.inner_text()
        assert timeline.locator(".event-delivered").count() == 2  # To and Cc
        assert "Delivery webhook post: delivered" in timeline.inner_text()
        assert receiver.url in timeline.inner_text()
        frame = page.frame_locator("iframe.html-frame")
        frame.get_by_text("Welcome to Acme, Ada!").wait_for()
        assert frame.locator("body").inner_text().count("scripted") == 0  # its script did not run
        assert image.fetches == 0  # the remote image was blocked
        assert "Welcome to Acme, Ada! Your account is ready" in page.locator("#text-view pre").inner_text()
        headers = page.locator("#headers-view table").inner_text()
        assert "Subject" in headers and "Welcome aboard, Ada" in headers
        assert "Content-Type: multipart/alternative" in page.locator("#raw-view pre").inner_text()
        # The page's whole height as the viewport: a full-page capture leaves the sandboxed frame (drawn by
        # another renderer process) blank.
        page.set_viewport_size({"width": 1280, "height": min(3000, page.evaluate("document.body.scrollHeight"))})
        page.screenshot(path=str(shots / "message.png"))
        page.screenshot(path=str(shots / "message-top.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 1400})
        page.set_viewport_size({"width": 1280, "height": 860})
        page.get_by_role("link", name="Load remote content").click()
        page.frame_locator("iframe.html-frame").get_by_text("Welcome to Acme, Ada!").wait_for()
        wait_for(lambda: image.fetches >= 1, timeout=10)

        # The bounced message's page tells why.
        page.goto(server.base_url + f"/ui/servers/1/messages/{ids['bounced']}")
        assert "Simulated HardBounce bounce" in page.locator(".event-bounced").inner_text()

        # Phone width: the layout reflows, nothing scrolls sideways but the table's own region.
        page.set_viewport_size({"width": 375, "height": 812})
        page.goto(server.base_url + "/ui/servers/1/streams/outbound/activity")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, page.evaluate(WIDE)
        page.screenshot(path=str(shots / "activity-375.png"), full_page=True)
        page.goto(server.base_url + f"/ui/servers/1/messages/{ids['welcome']}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, page.evaluate(WIDE)
        page.screenshot(path=str(shots / "message-375.png"), full_page=True)

        # The sandbox inbox: the captured mail beside the selected message.
        page.set_viewport_size({"width": 1280, "height": 860})
        page.goto(server.base_url + "/ui/servers/1/streams/outbound/inbox")
        page.get_by_role("link", name="Sandbox inbox").wait_for()
        page.locator(".inbox-list").get_by_text("Welcome aboard, Ada").click()
        page.frame_locator(".inbox-pane iframe").get_by_text("Welcome to Acme, Ada!").wait_for()
        page.screenshot(path=str(shots / "inbox.png"))

        # Signing out ends the session: the next page asks to sign in again.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/ui/login")
        page.goto(server.base_url + "/ui/servers/1/streams/outbound/activity")
        assert "/ui/login" in page.url
        # The dashboard's own pages break nothing of their policy (no inline script or style of ours); the
        # message's frame (…/html) logs what its policy blocked, as it should.
        # The one expected error of ours: the wrong password's answer is a 401 page.
        assert not [e for e in console_errors if not e[0].split("?")[0].endswith("/html")
                    and not (e[0].endswith("/ui/login") and "status of 401" in e[1])], console_errors
        assert httpx.get(server.base_url + "/healthz").status_code == 200
