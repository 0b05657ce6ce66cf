"""Tracking tokens: round trips, forgeries refused, placeholders that personalize without moving a byte."""

from __future__ import annotations

import quopri
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.server.domain.tracking import (
    MAX_LINKS,
    OPEN,
    TOKEN_LENGTH,
    TrackingToken,
    decode_token,
    encode_token,
    has_placeholders,
    new_key,
    personalize,
    placeholder,
)

KEY = bytes(range(32))
tokens = st.builds(TrackingToken, st.integers(1, (1 << 63) - 1), st.integers(0, MAX_LINKS))


@given(tokens)
def test_a_token_round_trips_and_has_a_fixed_url_safe_length(token: TrackingToken) -> None:
    text = encode_token(KEY, token)
    assert len(text) == TOKEN_LENGTH and re.fullmatch(r"[A-Za-z0-9_-]+", text)
    assert decode_token(KEY, text) == token


@given(tokens, st.integers(0, TOKEN_LENGTH - 1), st.sampled_from("AZaz09_-"))
def test_any_changed_character_is_refused(token: TrackingToken, position: int, replacement: str) -> None:
    text = encode_token(KEY, token)
    changed = text[:position] + replacement + text[position + 1:]
    if changed != text:
        # Only the last character's low bits may decode to the same bytes; that is not a forgery.
        found = decode_token(KEY, changed)
        assert found is None or found == token


@pytest.mark.parametrize("text", ["", "x" * 27, "x" * 29, "!" * 28, placeholder(3), "a" * 28, "é" * 28])
def test_what_no_key_signed_is_none_never_an_error(text: str) -> None:
    assert decode_token(KEY, text) is None


def test_another_key_does_not_verify() -> None:
    text = encode_token(KEY, TrackingToken(5, OPEN))
    assert decode_token(new_key(), text) is None
    assert decode_token(KEY, text) == TrackingToken(5, OPEN)


@pytest.mark.parametrize("bad", [TrackingToken(0, 1), TrackingToken(1, MAX_LINKS + 1), TrackingToken(1, -1)])
def test_out_of_range_tokens_are_not_encoded(bad: TrackingToken) -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        encode_token(KEY, bad)


def test_placeholders_are_token_sized_and_quoted_printable_leaves_them_alone() -> None:
    for link in (OPEN, 1, 42, MAX_LINKS):
        text = placeholder(link)
        assert len(text) == TOKEN_LENGTH
        assert quopri.encodestring(text.encode()) == text.encode()


def test_personalize_swaps_every_placeholder_for_this_deliverys_token_and_keeps_the_length() -> None:
    content = (f'<a href="http://t.example/c/{placeholder(1)}">a</a><a href="http://t.example/c/{placeholder(2)}">'
               f'b</a><a href="http://t.example/c/{placeholder(1)}">a again</a>'
               f'<img src="http://t.example/o/{placeholder(OPEN)}">').encode()
    assert has_placeholders(content)
    mine = personalize(content, KEY, 77)
    assert len(mine) == len(content) and not has_placeholders(mine)
    found = [decode_token(KEY, t.decode()) for t in re.findall(rb"/[co]/([A-Za-z0-9_-]{28})", mine)]
    assert found == [TrackingToken(77, 1), TrackingToken(77, 2), TrackingToken(77, 1), TrackingToken(77, OPEN)]
    assert personalize(content, KEY, 78) != mine
    assert personalize(b"no tracking here", KEY, 77) == b"no tracking here"
