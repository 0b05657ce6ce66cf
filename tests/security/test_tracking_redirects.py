"""No open redirect: `/c/{token}` redirects only to a link Posthouse stored for a token it signed, whatever the
request holds; every altered token is a 404; a stored link that is not a safe http(s) URL is never a Location."""

from __future__ import annotations

import string
from collections.abc import AsyncIterator

import pytest

from posthouse.server.domain.tracking import TrackingToken, encode_token, new_key
from posthouse.server.store.base import Store
from tracking_helpers import CHROME, LINKS, Harness, harness, track

ALPHABET = string.ascii_letters + string.digits + "-_"


@pytest.fixture
async def h(store: Store) -> AsyncIterator[Harness]:
    async for made in harness(store):
        yield made


async def test_every_single_character_change_of_a_link_token_is_a_404(h: Harness) -> None:
    message = await h.tracked("ann@example.com")
    token = message.link("ann@example.com", 1)
    assert (await h.click(token, CHROME)).status_code == 302
    for position, char in enumerate(token):
        replacement = ALPHABET[(ALPHABET.index(char) + 1) % len(ALPHABET)]
        altered = token[:position] + replacement + token[position + 1:]
        answer = await h.click(altered, CHROME)
        assert answer.status_code == 404 and "location" not in answer.headers, (position, altered)


async def test_the_target_never_comes_from_the_request(h: Harness) -> None:
    message = await h.tracked("ann@example.com")
    token = message.link("ann@example.com", 1)
    answer = await h.tracker.get(f"/c/{token}?url=https://evil.example/&redirect=https://evil.example/")
    assert answer.status_code == 302 and answer.headers["location"] == LINKS[0][1]
    for path in (f"/c/{token}/https://evil.example/", f"/c/https://evil.example/{token}", "/c/https://evil.example/",
                 f"/c//{token}", f"/c/{token}%0d%0aLocation:%20https://evil.example/"):
        answer = await h.tracker.get(path)
        assert answer.status_code == 404 and "location" not in answer.headers, path


async def test_a_token_signed_with_another_key_is_a_404(h: Harness) -> None:
    message = await h.tracked("ann@example.com")
    foreign = encode_token(new_key(), TrackingToken(message.deliveries["ann@example.com"], 1))
    assert (await h.click(foreign, CHROME)).status_code == 404


@pytest.mark.parametrize("url", [
    "javascript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "https://example.com/\r\nSet-Cookie: session=stolen",
    "//evil.example/",
    "ftp://files.example.com/",
])
async def test_a_stored_link_that_is_no_safe_http_url_is_never_a_location(h: Harness, url: str) -> None:
    message_id = await h.send("ann@example.com")
    message = await track(h.store, message_id, [(1, url, "HTML")])
    answer = await h.click(message.link("ann@example.com", 1), CHROME)
    assert answer.status_code == 404 and "location" not in answer.headers


async def test_a_non_ascii_link_is_percent_encoded_in_the_location(h: Harness) -> None:
    message_id = await h.send("ann@example.com")
    message = await track(h.store, message_id, [(1, "https://example.com/café?q=naïve #top", "HTML")])
    answer = await h.click(message.link("ann@example.com", 1), CHROME)
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://example.com/caf%C3%A9?q=na%C3%AFve%20#top"
