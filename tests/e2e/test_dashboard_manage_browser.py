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
