"""The dashboard's suppressions page in a real browser (Debian's chromium, Playwright) against `posthouse serve`:
mail to the sandbox's bounce-testing address hard-bounces, which suppresses the address; the operator finds it,
reactivates it with the row's button, and it is gone from the page and from the API's dump. Screenshots go to
tests/artifacts/dashboard/.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from e2e.test_dashboard_browser import ARTIFACTS, CHROMIUM, WIDE, browser_context, create_user
from e2e.test_dashboard_stats_browser import sign_in
from support import ServerProcess, wait_for

__all__ = ["browser_context"]  # the fixture, shared with the D1 browser test

if not os.access(CHROMIUM, os.X_OK) and os.environ.get("POSTHOUSE_REQUIRE_CHROMIUM") != "1":
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (apt-get install -y chromium)")

BOUNCING = "hardbounce@bounce-testing.postmarkapp.com"


def test_a_hard_bounces_suppression_is_reactivated(tmp_path: Path, database_url: str, browser_context: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = ARTIFACTS / ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    shots.mkdir(exist_ok=True)
    with ServerProcess(tmp_path / "data", database_url) as server, server.client() as api:
        create_user(server)
        for to in (BOUNCING, "ann@example.com"):
            answer = api.post("/email", json={"From": "shop@acme.example", "To": to, "Subject": "Your receipt",
                                              "TextBody": "Thanks."})
            assert answer.status_code == 200, answer.text

        def suppressed() -> list[str]:
            dump = api.get("/message-streams/outbound/suppressions/dump").json()["Suppressions"]
            return [s["EmailAddress"] for s in dump]

        assert wait_for(suppressed, timeout=30) == [BOUNCING]

        page = browser_context.new_page()
        sign_in(page, server.base_url, "/ui/servers/1/streams/outbound/activity")
        page.get_by_role("link", name="Suppressions").click()
        page.wait_for_url("**/ui/servers/1/streams/outbound/suppressions")
        rows = page.locator("table.suppressions tbody tr")
        assert rows.count() == 1
        assert "HardBounce" in rows.first.inner_text() and BOUNCING in rows.first.inner_text()
        page.screenshot(path=str(shots / "suppressions.png"), full_page=True)

        page.get_by_role("button", name=f"Reactivate {BOUNCING}").click()
        page.wait_for_url("**/suppressions?done=reactivated*")
        assert f"{BOUNCING} is reactivated" in page.get_by_role("status").inner_text()
        assert page.locator("table.suppressions").count() == 0
        assert "No address is suppressed in this stream." in page.locator("main").inner_text()
        assert suppressed() == []

        # By hand, from the keyboard: the address typed and Enter pressed.
        page.get_by_label("Address to suppress").fill("quiet@example.org")
        page.keyboard.press("Enter")
        page.wait_for_url("**done=suppressed*")
        assert rows.count() == 1 and "ManualSuppression" in rows.first.inner_text()
        assert suppressed() == ["quiet@example.org"]
        page.set_viewport_size({"width": 375, "height": 812})
        page.reload()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, page.evaluate(WIDE)
