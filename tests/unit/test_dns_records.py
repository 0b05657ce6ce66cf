"""Sending domains' names and the DNS records they publish, read back (domain/dns_records.py): tables of cases,
and hypothesis for the DKIM record reader."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.server.domain.dkim_keys import DkimAlgorithm, generate_private_key, public_key_value, txt_record
from posthouse.server.domain.dns_records import (
    DomainNameError,
    dkim_record_matches,
    dkim_tags,
    domain_of,
    is_subdomain,
    normalize_domain,
    selector_for,
    spf_includes,
    spf_record,
)

RSA_PEM = generate_private_key(DkimAlgorithm.RSA_SHA256)
RSA_P = public_key_value(DkimAlgorithm.RSA_SHA256, RSA_PEM)
ED_PEM = generate_private_key(DkimAlgorithm.ED25519_SHA256)
ED_P = public_key_value(DkimAlgorithm.ED25519_SHA256, ED_PEM)


@pytest.mark.parametrize(("text", "name"), [
    ("example.com", "example.com"),
    ("Mail.Example.COM.", "mail.example.com"),
    ("  pm-bounces.example.com ", "pm-bounces.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("a1.b-2.example.org", "a1.b-2.example.org"),
])
def test_domain_names_have_one_spelling(text: str, name: str) -> None:
    assert normalize_domain(text) == name


@pytest.mark.parametrize("text", [
    "", ".", "localhost", "com.", "a..example.com", "-a.example.com", "a-.example.com", "a_b.example.com",
    "example.123", "exa mple.com", "x" * 64 + ".example.com", ("x" * 63 + ".") * 4 + "com", "a@b.example.com",
])
def test_what_is_not_a_domain_name(text: str) -> None:
    with pytest.raises(DomainNameError):
        normalize_domain(text)


def test_the_domain_of_an_address_and_subdomains() -> None:
    assert domain_of("Jane@Mail.Example.com") == "mail.example.com"
    assert domain_of("no-domain") is None and domain_of("@example.com") is None and domain_of("a@localhost") is None
    assert is_subdomain("pm-bounces.example.com", "example.com")
    assert not is_subdomain("example.com", "example.com") and not is_subdomain("badexample.com", "example.com")


def test_selectors_are_times_marked_by_algorithm_and_never_reused() -> None:
    when = datetime(2026, 5, 14, 9, 30, 12, tzinfo=UTC)
    assert selector_for(DkimAlgorithm.RSA_SHA256, when, set()) == "20260514093012ph"
    assert selector_for(DkimAlgorithm.ED25519_SHA256, when, set()) == "20260514093012phe"
    taken = {"20260514093012ph", "20260514093012ph-2"}
    assert selector_for(DkimAlgorithm.RSA_SHA256, when, taken) == "20260514093012ph-3"


@pytest.mark.parametrize(("record", "matches"), [
    (txt_record(DkimAlgorithm.RSA_SHA256, RSA_PEM), True),
    (f"k=rsa; p={RSA_P}", True),  # no v=: it is optional
    (f"p={RSA_P}", True),  # k= defaults to rsa (RFC 6376 §3.6.1)
    (f"v=DKIM1;k=rsa;p={RSA_P[:50]}\t {RSA_P[50:]}", True),  # folding whitespace inside the value
    (f"V=DKIM1; K=rsa; P={RSA_P}", True),  # tag names are read case-insensitively (lenient)
    (f"k=rsa; v=DKIM1; p={RSA_P}", False),  # v= present but not first
    (f"v=DKIM2; k=rsa; p={RSA_P}", False),
    (f"v=DKIM1; k=ed25519; p={RSA_P}", False),
    ("v=DKIM1; k=rsa; p=", False),  # a revoked key
    (f"v=DKIM1; k=rsa; p={RSA_P[:-4]}", False),
    ("v=spf1 -all", False),
])
def test_a_dkim_record_matches_its_key_only(record: str, matches: bool) -> None:
    assert dkim_record_matches(record, DkimAlgorithm.RSA_SHA256, RSA_P) is matches


def test_an_ed25519_record_names_its_type() -> None:
    assert dkim_record_matches(txt_record(DkimAlgorithm.ED25519_SHA256, ED_PEM), DkimAlgorithm.ED25519_SHA256, ED_P)
    assert not dkim_record_matches(f"p={ED_P}", DkimAlgorithm.ED25519_SHA256, ED_P)  # k= would mean rsa


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=200))
def test_any_txt_text_is_read_without_error(text: str) -> None:
    tags = dkim_tags(text)
    assert all(name == name.strip().lower() for name in tags)
    dkim_record_matches(text, DkimAlgorithm.RSA_SHA256, RSA_P)


@given(st.lists(st.sampled_from([" ", "\t", "\r\n "]), min_size=1, max_size=5), st.integers(1, len(RSA_P) - 1))
def test_whitespace_anywhere_in_the_key_does_not_matter(spaces: list[str], cut: int) -> None:
    record = f"v=DKIM1; k=rsa; p={RSA_P[:cut]}{''.join(spaces)}{RSA_P[cut:]}"
    assert dkim_record_matches(record, DkimAlgorithm.RSA_SHA256, RSA_P)


@pytest.mark.parametrize(("records", "found"), [
    (["v=spf1 -all"], "v=spf1 -all"),
    (["google-site-verification=x", "v=spf1 a mx ~all"], "v=spf1 a mx ~all"),
    (["V=SPF1 include:a.example ~all"], "V=SPF1 include:a.example ~all"),
    (["v=spf10 -all"], None),
    (["v=spf1 -all", "v=spf1 a -all"], None),  # two records: permerror (RFC 7208 §4.5)
    ([], None),
])
def test_the_spf_record_is_the_one_starting_v_spf1(records: list[str], found: str | None) -> None:
    assert spf_record(records) == found


def test_spf_includes_and_redirect() -> None:
    assert spf_includes("v=spf1 ip4:192.0.2.1 include:A.example.com. ~include:b.example.org -all") == \
        (["a.example.com", "b.example.org"], None)
    assert spf_includes("v=spf1 redirect=_spf.Example.net") == ([], "_spf.example.net")
    assert spf_includes("v=spf1 a mx -all") == ([], None)
