"""The statistics page in a real browser (Debian's chromium, Playwright) against `posthouse serve` relaying to
an SMTP sink on loopback: tracked mail is sent through the API, one recipient is refused (a hard bounce), the
delivered copies' pixels are loaded and a link followed as a mail client and a browser would; the page then
shows those numbers in its totals, in its charts (their descriptions and each bar's tooltip) and in its table,
the same as `/stats/outbound`. Screenshots go to tests/artifacts/dashboard/ (the README's comes from here).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.test_dashboard_browser import ARTIFACTS, CHROMIUM, EMAIL, PASSWORD, WIDE, browser_context, create_user
from e2e.test_tracking import FAST, _Urls
from integration.smtp_peers import RecordingSink
from support import ServerProcess, wait_for
from tracking_helpers import APPLE_MAIL, CHROME

__all__ = ["browser_context"]  # the fixture, shared with the D1 browser test

if not os.access(CHROMIUM, os.X_OK) and os.environ.get("POSTHOUSE_REQUIRE_CHROMIUM") != "1":
    pytestmark = pytest.mark.skip(reason="Debian's chromium is not installed (apt-get install -y chromium)")

GONE = "gone@example.net"


def sign_in(page: Any, base_url: str, path: str) -> None:
    page.goto(base_url + path)
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**" + path.split("?")[0] + "*")


def read_and_click(sink: RecordingSink, clicked: set[str]) -> None:
    """Load every delivered copy's pixel; follow the first link of the copies sent to `clicked`."""
    for received in sink.messages:
        copy = BytesParser(policy=policy.default).parsebytes(received.data)
        urls = _Urls()
        urls.feed(copy.get_body(("html",)).get_content())  # type: ignore[union-attr]
        pixel = httpx.get(urls.images[0], headers={"User-Agent": APPLE_MAIL}, timeout=10)
        assert pixel.status_code == 200 and pixel.content.startswith(b"GIF89a")
        if received.rcpt_tos[0] in clicked:
            click = httpx.get(urls.links[0], headers={"User-Agent": CHROME}, timeout=10)
            assert click.status_code == 302 and click.headers["location"] == "https://shop.example/order"


def test_the_stats_page_shows_sends_bounces_opens_and_clicks(tmp_path: Path, database_url: str,
                                                             browser_context: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = ARTIFACTS / ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    shots.mkdir(exist_ok=True)
    today = datetime.now(UTC).date().isoformat()
    with RecordingSink() as sink, ServerProcess(tmp_path / "data", database_url, delivery="relay",
                                                relay_url=f"smtp://127.0.0.1:{sink.port}", env=FAST) as server:
        sink.rcpt_replies = {GONE: "550 5.1.1 No such user here"}
        create_user(server)
        with server.client() as api:
            for to in ("ann@example.com", "bob@example.com", "cy@example.com", GONE):
                answer = api.post("/email", json={
                    "From": "shop@acme.example", "To": to, "Subject": "Your order", "Tag": "order",
                    "TrackOpens": True, "TrackLinks": "HtmlOnly", "TextBody": "Thanks for your order.",
                    "HtmlBody": '<p>Thanks! <a href="https://shop.example/order">See your order</a></p>'})
                assert answer.status_code == 200, answer.text
            wait_for(lambda: len(sink.messages) == 3, timeout=20)
            read_and_click(sink, {"ann@example.com"})

            def counted() -> dict[str, Any] | None:
                stats: dict[str, Any] = api.get("/stats/outbound").json()
                done = stats["Opens"] == 3 and stats["TotalClicks"] == 1 and stats["Bounced"] == 1
                return stats if done else None

            overview = wait_for(counted, timeout=20)
        assert overview["Sent"] == 4

        page = browser_context.new_page()
        sign_in(page, server.base_url, "/ui/servers/1/streams/outbound/activity")
        page.get_by_role("link", name="Statistics").click()
        page.wait_for_url("**/ui/servers/1/streams/outbound/stats")
        # The totals, as /stats/outbound says.
        assert page.locator("#total-sent").inner_text() == "4"
        assert page.locator("#total-delivery").inner_text() == f"{round(100 - overview['BounceRate'], 3)}%" == "75.0%"
        assert page.locator("#total-bounced").inner_text() == "1 (25.0%)"
        assert page.locator("#total-opens").inner_text() == "3 (3 unique)"
        assert page.locator("#total-clicks").inner_text().startswith("1 ")
        # The charts: an image each with a name and a description a screen reader reads, and today's bar.
        sends = page.get_by_role("img", name="Sends per day")
        assert "4 sent in all" in page.locator("#chart-sends-desc").text_content()
        assert sends.locator(f'rect[data-label="{today}: 4 sent"]').count() == 1
        assert page.locator(f'#chart-opens rect[data-label="{today}: 3 opens"]').count() == 1
        assert page.locator(f'#chart-clicks rect[data-label="{today}: 1 clicks"]').count() == 1
        assert page.locator(f'#chart-bounces rect[data-label="{today}: 1 bounced"]').count() == 1
        assert page.locator(f'#chart-delivery circle[data-label="{today}: 75% delivered"]').count() == 1
        bar = sends.locator(f'rect[data-label="{today}: 4 sent"]').bounding_box()
        assert bar is not None and bar["height"] > 50  # the day's bar is drawn (4 of an axis of 5)
        # The table: today's row, in the same numbers.
        row = page.locator("table.days tbody tr").first.inner_text().split("\t")
        assert [cell.strip() for cell in row] == [today, "4", "75.0%", "1", "0", "3", "3", "1", "1"]
        page.screenshot(path=str(shots / "stats.png"), full_page=True)
        # The README's (docs/images/dashboard-stats.png): the totals and the charts, without the long table.
        page.set_viewport_size({"width": 1280, "height": 1280})
        page.screenshot(path=str(shots / "stats-top.png"))
        page.set_viewport_size({"width": 1280, "height": 860})

        # The filters: another tag has nothing; every stream counts the same mail here.
        page.get_by_label("Tag", exact=True).fill("newsletter")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**tag=newsletter*")
        assert page.locator("#total-sent").inner_text() == "0"
        page.get_by_label("Tag", exact=True).fill("order")
        page.get_by_label("Streams counted").select_option("all")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**messagestream=all*")
        assert page.locator("#total-sent").inner_text() == "4"

        # Phone width: the charts shrink with the page; nothing but the table's region scrolls sideways.
        page.set_viewport_size({"width": 375, "height": 812})
        page.goto(server.base_url + "/ui/servers/1/streams/outbound/stats")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, page.evaluate(WIDE)
        page.screenshot(path=str(shots / "stats-375.png"), full_page=True)
