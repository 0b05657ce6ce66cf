"""Address lists as Postmark accepts them: commas, quoted names, validation of each address."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.server.domain.addresses import Address, AddressError, parse_address_list, split_address_list


@pytest.mark.parametrize(("text", "expected"), [
    ("a@example.com", [Address("a@example.com")]),
    ("a@example.com, b@example.org", [Address("a@example.com"), Address("b@example.org")]),
    ('"Joe, Jr." <joe@example.com>', [Address("joe@example.com", "Joe, Jr.")]),
    ("Zoë <zoe@Example.COM>", [Address("zoe@example.com", "Zoë")]),
    ('"Quote \\" in name" <q@example.com>', [Address("q@example.com", 'Quote " in name')]),
    ("<bare@example.com>", [Address("bare@example.com")]),
    ("a@example.com; b@example.com", [Address("a@example.com"), Address("b@example.com")]),
    ("a@example.com,,", [Address("a@example.com")]),
    ("用户@例子.广告", [Address("用户@例子.广告")]),
])
def test_parse(text: str, expected: list[Address]) -> None:
    assert parse_address_list(text) == expected


@pytest.mark.parametrize("text", ["test", "a@", "@example.com", "a@b@example.com", "a@localhost", "a@example.test",
                                  '"unterminated <a@example.com>', "a@example.com\r\nBcc: x@example.com",
                                  "<a@example.com"])
def test_refused(text: str) -> None:
    with pytest.raises(AddressError):
        parse_address_list(text)


def test_str_quotes_names_for_display() -> None:
    assert str(Address("a@example.com", 'A "B"')) == '"A \\"B\\"" <a@example.com>'
    assert str(Address("a@example.com")) == "a@example.com"


@given(st.lists(st.from_regex(r"[a-z0-9]{1,10}@[a-z]{1,10}\.com", fullmatch=True), min_size=1, max_size=10),
       st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20), min_size=10,
                max_size=10))
def test_round_trip_of_named_lists(emails: list[str], names: list[str]) -> None:
    addresses = [Address(e, n.strip() or None) for e, n in zip(emails, names, strict=False)]
    text = ", ".join(str(a) for a in addresses)
    assert len(split_address_list(text)) == len(addresses)
    assert parse_address_list(text) == [Address(a.email, a.name) for a in addresses]
