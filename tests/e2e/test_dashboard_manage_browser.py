"""The dashboard's management pages in a real browser (Debian's chromium, driven by Playwright, against
`posthouse serve`): the template editor's live preview, then the servers, streams, webhooks and domains
pages (issue 15, D2). Screenshots go to tests/artifacts/dashboard/<database>/ (git-ignored)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.test_dashboard_browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, EMAIL, PASSWORD, WIDE, create_user
from support import LOOPBACK_WEBHOOKS_ENV, ServerProcess

if not os.access(CHROMIUM, os.X_OK) and os.environ.get("POSTHOUSE_REQUIRE_CHROMIUM") != "1":
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (apt-get install -y chromium)")


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        try:
            yield context.new_page()
        finally:
            context.close()


def shots_for(database_url: str) -> Path:
    shots = ARTIFACTS / ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def sign_in(page: Any, server: ServerProcess, path: str) -> None:
    page.goto(server.base_url + path)
    assert "/ui/login" in page.url
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**" + path.split("?")[0] + "*")


def test_template_editor_preview_save_and_errors(tmp_path: Path, database_url: str, page: Any) -> None:
    from playwright.sync_api import expect

    shots = shots_for(database_url)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.location.get('url', '')}: {m.text}") if m.type == "error" else None)
    with ServerProcess(tmp_path / "data", database_url, env={**LOOPBACK_WEBHOOKS_ENV}) as server:
        create_user(server)
        with server.client() as api:
            made = api.post("/templates", json={
                "Name": "Receipt", "Alias": "receipt", "Subject": "Receipt for {{name}}",
                "HtmlBody": '<h1 style="color:#8a3b12">Thanks, {{name}}!</h1><p>Total: {{total}}</p>',
                "TextBody": "Thanks, {{name}}. Total: {{total}}"})
            assert made.status_code == 200, made.text
            template_id = made.json()["TemplateId"]
        sign_in(page, server, "/ui/servers/1/templates")
        page.get_by_role("link", name="Templates").wait_for()
        page.get_by_role("link", name="Receipt").click()
        page.wait_for_url(f"**/ui/servers/1/templates/{template_id}")
        frame = page.frame_locator("iframe.preview-frame")
        frame.get_by_text("Thanks, name_Value!").wait_for()  # the stored template, from its suggested model

        # Typing a model: the preview (subject, text, and the HTML in its frame) follows without a click.
        page.get_by_label("Test model (JSON, not saved)").fill('{"name": "Ada", "total": "$12.00"}')
        expect(page.locator("#template-preview .rendered-subject")).to_have_text("Receipt for Ada")
        frame.get_by_text("Thanks, Ada!").wait_for()
        assert "Thanks, Ada. Total: $12.00" in page.locator("#template-preview pre").inner_text()
        html_field = page.get_by_label("HTML body")
        html_field.fill(html_field.input_value() + "<p>See you soon, {{name}}.</p>")
        frame.get_by_text("See you soon, Ada.").wait_for()
        page.screenshot(path=str(shots / "template-editor.png"), full_page=True)

        # Saving keeps the edit (read back through the API).
        page.get_by_role("button", name="Save").click()
        page.wait_for_url("**?done=saved")
        assert page.get_by_role("status").inner_text() == "Saved."
        with server.client() as api:
            stored = api.get(f"/templates/{template_id}").json()
        assert stored["HtmlBody"].endswith("<p>See you soon, {{name}}.</p>")

        # A broken tag: the preview lists the error at its place; saving is refused with the reason, inline.
        page.get_by_label("HTML body").fill("<p>Items:</p>\n{{#each items}}<li>{{.}}</li>")
        errors_list = page.locator("#template-preview .validation-errors")
        errors_list.wait_for()
        assert "line 2" in errors_list.inner_text()
        frame.get_by_text("The HTML body has errors").wait_for()
        page.screenshot(path=str(shots / "template-error.png"), full_page=True)
        page.get_by_role("button", name="Save").click()
        alert = page.locator("#form-error")
        alert.wait_for()
        assert "could not be parsed" in alert.inner_text()
        assert "{{#each items}}" in page.get_by_label("HTML body").input_value()  # the draft is kept
        with server.client() as api:
            assert api.get(f"/templates/{template_id}").json()["HtmlBody"] == stored["HtmlBody"]

        # Phone width: the editor is one column, nothing scrolls sideways.
        page.set_viewport_size({"width": 375, "height": 812})
        page.goto(server.base_url + f"/ui/servers/1/templates/{template_id}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, page.evaluate(WIDE)
        page.screenshot(path=str(shots / "template-editor-375.png"), full_page=True)
    # Nothing of ours broke the pages' policy; the one expected error is the refused save's 400.
    assert not [e for e in errors if "status of 400" not in e], errors


def test_management_pages_by_keyboard_and_at_phone_width(tmp_path: Path, database_url: str, page: Any) -> None:
    """The navigation reaches every management page; a server made in the browser shows its token once (and
    the API takes it); a webhook made there gets a test post into its log; each page reflows at 375 px."""
    from playwright.sync_api import expect

    from webhook_receiver import WebhookReceiver

    shots = shots_for(database_url)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.location.get('url', '')}: {m.text}") if m.type == "error" else None)
    with WebhookReceiver() as receiver, \
            ServerProcess(tmp_path / "data", database_url, env={**LOOPBACK_WEBHOOKS_ENV}) as server:
        create_user(server)
        sign_in(page, server, "/ui/servers/1/streams/outbound/activity")
        nav = page.get_by_role("navigation", name="Main")
        for label, url in (("Templates", "**/ui/servers/1/templates?stream=outbound"),
                           ("Webhooks", "**/ui/servers/1/streams/outbound/webhooks"),
                           ("Streams", "**/ui/servers/1/streams?stream=outbound"),
                           ("Domains", "**/ui/domains?server=1&stream=outbound"),
                           ("Servers", "**/ui/servers?server=1&stream=outbound")):
            nav.get_by_role("link", name=label).click()
            page.wait_for_url(url)
            expect(nav.get_by_role("link", name=label)).to_have_attribute("aria-current", "page")

        # A server, made with the keyboard: its token once, then never again.
        page.get_by_label("Name", exact=True).fill("Shop")
        page.get_by_label("Delivery").select_option("Sandbox")
        page.get_by_label("Track opens by default").check()
        page.get_by_label("Name", exact=True).press("Enter")
        token = page.get_by_label("Server API token").input_value()
        page.screenshot(path=str(shots / "servers-token.png"), full_page=True)
        with server.client() as api:
            answer = api.get("/server", headers={"X-Postmark-Server-Token": token})
            assert answer.status_code == 200 and answer.json()["Name"] == "Shop"
        page.goto(server.base_url + "/ui/servers")  # a later visit: the list, without the token
        assert token not in page.content()

        # A webhook on the default stream, then a test post that shows in its log.
        page.goto(server.base_url + "/ui/servers/1/streams/outbound/webhooks")
        page.get_by_label("URL").fill(receiver.url)
        page.get_by_role("button", name="Create webhook").click()
        page.wait_for_url("**/ui/servers/1/webhooks/*?done=created")
        page.get_by_label("Event").select_option("Delivery")
        page.get_by_role("button", name="Send test post").click()
        page.wait_for_url("**?done=queued")
        receiver.wait(lambda: receiver.of_type("Delivery"))

        def delivered() -> bool:
            page.reload()
            return page.locator("table.deliveries .status-delivered").count() == 1

        receiver.wait(delivered)
        page.screenshot(path=str(shots / "webhook.png"), full_page=True)

        # Streams and a domain (its records to publish), at phone width.
        page.goto(server.base_url + "/ui/domains")
        page.get_by_label("Domain", exact=True).fill("shop.example")
        page.get_by_role("button", name="Add domain").click()
        page.wait_for_url("**/ui/domains/*?done=created")
        assert "._domainkey.shop.example" in page.locator(".record").first.inner_text()
        page.screenshot(path=str(shots / "domain.png"), full_page=True)
        domain_url = page.url
        page.set_viewport_size({"width": 375, "height": 812})
        for path in ("/ui/servers", "/ui/servers/1/settings", "/ui/servers/1/streams", "/ui/servers/1/templates",
                     "/ui/servers/1/templates/new", "/ui/servers/1/streams/outbound/webhooks", page_path(domain_url),
                     "/ui/domains"):
            page.goto(server.base_url + path)
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, (path, page.evaluate(WIDE))
        page.screenshot(path=str(shots / "domain-375.png"), full_page=True)
    assert not errors, errors


def page_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]
