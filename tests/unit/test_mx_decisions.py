"""The decisions of MX delivery, as tables: MX ordering, null MX, recipients by domain, source addresses, TLS
policy per host, MTA-STS records/policies/patterns, DANE matching, the limit and pool settings."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import random
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from mx_peers import TestCA
from posthouse.server.config import (
    DestinationLimit,
    SourceAddress,
    load_settings,
    parse_destination_limits,
    parse_nameservers,
    parse_source_pools,
)
from posthouse.server.delivery import dane
from posthouse.server.delivery.dns import MxRecord, TlsaRecord, ascii_domain
from posthouse.server.delivery.mta_sts import (
    PolicyError,
    StsMode,
    StsPolicy,
    mx_pattern_matches,
    parse_policy,
    parse_sts_record,
)
from posthouse.server.delivery.mx import (
    TlsPolicy,
    _Gate,
    _literal_address,
    choose_source,
    host_tls_policy,
    is_null_mx,
    is_too_many_recipients,
    order_mx,
    split_by_domain,
)
from posthouse.server.delivery.smtp_client import Reply
from posthouse.server.errors import ConfigurationError

# --- MX records ---------------------------------------------------------------------------------


def test_mx_hosts_are_ordered_by_preference_and_shuffled_among_equals() -> None:
    records = [MxRecord(20, "c.test"), MxRecord(10, "a.test"), MxRecord(10, "b.test"), MxRecord(30, "d.test")]
    orders = {tuple(host for host, _ in order_mx(records, random.Random(seed))) for seed in range(40)}
    assert orders == {("a.test", "b.test", "c.test", "d.test"), ("b.test", "a.test", "c.test", "d.test")}


@pytest.mark.parametrize(("records", "expected"), [
    ([], []),
    ([MxRecord(0, "")], []),  # a lone null MX is not a host (is_null_mx decides what it means)
    ([MxRecord(0, ""), MxRecord(10, "mx.test")], [("mx.test", 10)]),  # a null MX beside real ones is ignored
    ([MxRecord(30, "mx.test"), MxRecord(5, "mx.test")], [("mx.test", 5)]),  # listed twice: its best preference
    ([MxRecord(i, f"h{i:02}.test") for i in range(15)], [(f"h{i:02}.test", i) for i in range(10)]),  # at most 10
])
def test_order_mx_table(records: list[MxRecord], expected: list[tuple[str, int]]) -> None:
    assert order_mx(records, random.Random(0)) == expected


@pytest.mark.parametrize(("records", "expected"), [
    ([MxRecord(0, "")], True),
    ([MxRecord(10, "")], True),  # RFC 7505 §3 asks for preference 0, but the single "." is what matters
    ([MxRecord(0, ""), MxRecord(10, "mx.test")], False),
    ([MxRecord(0, "mx.test")], False),
    ([], False),
])
def test_null_mx_table(records: list[MxRecord], expected: bool) -> None:
    assert is_null_mx(records) is expected


def test_recipients_are_grouped_by_their_domain_in_dns_form() -> None:
    groups, refused = split_by_domain(["a@Example.TEST", "b@example.test", "c@bücher.test", "d@[192.0.2.1]",
                                       "nodomain", "e@", "a@Example.TEST"])
    assert groups == {"example.test": ["a@Example.TEST", "b@example.test"], "xn--bcher-kva.test": ["c@bücher.test"],
                      "[192.0.2.1]": ["d@[192.0.2.1]"]}
    assert {r: (reply.code, reply.enhanced) for r, reply in refused.items()} == {
        "nodomain": (553, "5.1.2"), "e@": (553, "5.1.2")}


@pytest.mark.parametrize(("domain", "expected"), [
    ("[192.0.2.1]", "192.0.2.1"),
    ("[IPv6:2001:db8::1]", "2001:db8::1"),
    ("[ipv6:::1]", "::1"),
    ("[not-an-address]", None),
    ("example.test", None),
])
def test_address_literals(domain: str, expected: str | None) -> None:
    assert _literal_address(domain) == expected


@pytest.mark.parametrize(("domain", "expected"), [
    ("Example.TEST.", "example.test"),
    ("bücher.test", "xn--bcher-kva.test"),
    ("ÖBB.test", "xn--bb-eka.test"),  # UTS #46 maps case first
])
def test_ascii_domain(domain: str, expected: str) -> None:
    assert ascii_domain(domain) == expected


# --- Source addresses ---------------------------------------------------------------------------


def test_a_domain_always_leaves_from_the_same_address_of_its_family() -> None:
    pool = (SourceAddress("192.0.2.1"), SourceAddress("192.0.2.2"), SourceAddress("2001:db8::1", "v6.sender.test"))
    chosen = {domain: choose_source(pool, domain, 4) for domain in (f"d{i}.test" for i in range(50))}
    assert {source.address for source in chosen.values() if source} == {"192.0.2.1", "192.0.2.2"}
    assert all(choose_source(pool, domain, 4) == source for domain, source in chosen.items())
    assert choose_source(pool, "x.test", 6) == SourceAddress("2001:db8::1", "v6.sender.test")
    assert choose_source(pool[:2], "x.test", 6) is None  # never from an address the operator did not list


@pytest.mark.parametrize(("default", "pools", "stream", "expected"), [
    ("", "", "outbound", ()),
    ("192.0.2.9", "", "broadcast", (SourceAddress("192.0.2.9"),)),
    ("192.0.2.9", "broadcast=192.0.2.5/mta5.test|2001:db8::5", "broadcast",
     (SourceAddress("192.0.2.5", "mta5.test"), SourceAddress("2001:db8::5"))),
    ("192.0.2.9", "broadcast=192.0.2.5", "outbound", (SourceAddress("192.0.2.9"),)),
])
def test_source_pools(default: str, pools: str, stream: str, expected: tuple[SourceAddress, ...]) -> None:
    assert parse_source_pools(default, pools).for_stream(stream) == expected


@pytest.mark.parametrize(("default", "pools"), [
    ("mail.example.test", ""), ("", "broadcast"), ("", "=192.0.2.1"), ("", "b=192.0.2.1/bad name"),
])
def test_bad_source_pools(default: str, pools: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_source_pools(default, pools)


# --- Limits -------------------------------------------------------------------------------------


def test_destination_limits_by_domain_and_by_mx_host_pattern() -> None:
    domain_default, host_default = DestinationLimit(20, 100), DestinationLimit(30, 100)
    limits = parse_destination_limits(
        "gmail.com=10/50/20, mx:*.google.com=5/40, mx:*.l.google.com=3/30, mx:mx.example.test=1/1, Outlook.com.=7/8",
        domain_default, host_default)
    assert limits.for_domain("GMAIL.com") == DestinationLimit(10, 50, 20.0)
    assert limits.for_domain("outlook.com") == DestinationLimit(7, 8)
    assert limits.for_domain("example.test") == domain_default
    assert limits.for_host("alt1.aspmx.l.google.com") == DestinationLimit(3, 30)  # the most specific pattern
    assert limits.for_host("smtp.google.com") == DestinationLimit(5, 40)
    assert limits.for_host("google.com") == host_default
    assert limits.for_host("MX.example.test.") == DestinationLimit(1, 1)
    assert limits.for_host("other.example.test") == host_default


@pytest.mark.parametrize("text", ["gmail.com", "gmail.com=10", "gmail.com=0/10", "gmail.com=1/0", "=1/2",
                                  "gmail.com=a/b", "gmail.com=1/2/-1", "mx:=1/2", "gmail.com=1/2/3/4"])
def test_bad_destination_limits(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_destination_limits(text, DestinationLimit(1, 1), DestinationLimit(1, 1))


@pytest.mark.parametrize(("text", "expected"), [
    ("", ()),
    ("127.0.0.1:5353", (("127.0.0.1", 5353),)),
    ("10.0.0.1, ::1, [2001:db8::1]:5300", (("10.0.0.1", 53), ("::1", 53), ("2001:db8::1", 5300))),
])
def test_nameservers(text: str, expected: tuple[tuple[str, int], ...]) -> None:
    assert parse_nameservers(text) == expected


@pytest.mark.parametrize("overrides", [
    {"dns_nameservers": "dns.example.test"}, {"mx_ip_version": "5"}, {"mx_connections_per_domain": "0"},
    {"mx_timeout": "0s"}, {"mx_destination_limits": "x"}, {"mx_ehlo_name": "two words"}, {"delivery": "smoke"},
])
def test_bad_mx_settings_are_refused_at_start(overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        load_settings({"delivery": "mx", **overrides}, environ={})


def test_an_unreadable_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    from posthouse.server.runtime import mx_transport

    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate")
    settings = load_settings({"delivery": "mx", "mx_tls_ca_file": str(bad), "dns_nameservers": "127.0.0.1"},
                             environ={})
    with pytest.raises(ConfigurationError, match="mx_tls_ca_file"):
        mx_transport(settings, "posthouse.test")


async def test_a_gate_holds_at_most_its_limit_and_hands_slots_on_in_order() -> None:
    gate = _Gate(2)
    assert await gate.acquire(1) and await gate.acquire(1)
    assert not await gate.acquire(0.01)  # full: the wait runs out
    order: list[int] = []

    async def take(n: int) -> None:
        assert await gate.acquire(5)
        order.append(n)

    waiting = [asyncio.ensure_future(take(n)) for n in range(3)]
    await asyncio.sleep(0)
    gate.release()
    gate.release()
    await asyncio.sleep(0)
    assert order == [0, 1] and gate.held == 2
    gate.release()
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2] and gate.held == 2 and not gate.waiters


@pytest.mark.parametrize(("reply", "expected"), [
    (Reply(452, "4.5.3 Too many recipients", "4.5.3"), True),
    (Reply(452, "Too many recipients"), True),
    (Reply(452, "4.2.2 Mailbox full", "4.2.2"), False),
    (Reply(451, "4.5.3 Too many recipients", "4.5.3"), False),
])
def test_too_many_recipients(reply: Reply, expected: bool) -> None:
    assert is_too_many_recipients(reply) is expected


# --- MTA-STS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "host", "expected"), [
    ("mail.example.com", "mail.example.com", True),
    ("mail.example.com", "MAIL.Example.com.", True),
    ("*.example.com", "mail.example.com", True),
    ("*.example.com", "example.com", False),  # RFC 8461 §4.1: the wildcard is one label
    ("*.example.com", "foo.mail.example.com", False),
    ("*.example.com", ".example.com", False),
    ("mail.example.com", "mail.example.net", False),
])
def test_mx_patterns(pattern: str, host: str, expected: bool) -> None:
    assert mx_pattern_matches(pattern, host) is expected


@pytest.mark.parametrize(("records", "expected"), [
    (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
    (["v=STSv1;id=abc"], "abc"),
    (["v=STSv1; id=abc; extension=value;"], "abc"),
    (["some other record", "v=STSv1; id=x1;"], "x1"),  # records not starting with v=STSv1; are discarded
    (["v=STSv1; id=a;", "v=STSv1; id=b;"], None),  # two: as if none
    (["v=STSv1;"], None),  # no id
    (["v=STSv1; id=has-dash;"], None),  # id is 1*32 alphanumerics
    (["v=STSv1; id=" + "a" * 33], None),
    (["v=STSv2; id=a;"], None),
    ([], None),
])
def test_sts_records(records: list[str], expected: str | None) -> None:
    assert parse_sts_record(records) == expected


def test_a_policy_file() -> None:
    policy = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
                          "mx: backupmx.example.com.\r\nmax_age: 604800\r\nunknown: ignored\r\n", "id1")
    assert policy == StsPolicy("id1", StsMode.ENFORCE, ("mail.example.com", "*.example.net", "backupmx.example.com"),
                               604800)
    assert policy.matches("a.example.net") and policy.matches("backupmx.example.com")
    assert not policy.matches("example.net")
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 86400000\n", "x").max_age == 31_557_600


@pytest.mark.parametrize("text", [
    "mode: enforce\nmx: a.test\nmax_age: 1\n",  # no version
    "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
    "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmax_age: 1\n",  # enforce without mx
    "version: STSv1\nmode: testing\nmx: a.test\nmax_age: -1\n",
    "version: STSv1\nmode: testing\nmx: a.test\n",  # no max_age
    "<html>version: STSv1</html>",
])
def test_bad_policy_files(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text, "x")


@pytest.mark.parametrize(("mode", "host", "expected"), [
    (None, "mx.test", (TlsPolicy.OPPORTUNISTIC, False)),
    (StsMode.ENFORCE, "mx.test", (TlsPolicy.MTA_STS, False)),
    (StsMode.ENFORCE, "other.test", (TlsPolicy.MTA_STS, True)),
    (StsMode.TESTING, "other.test", (TlsPolicy.MTA_STS_TESTING, False)),
])
def test_tls_policy_per_host(mode: StsMode | None, host: str, expected: tuple[TlsPolicy, bool]) -> None:
    policy = StsPolicy("1", mode, ("mx.test",), 60) if mode is not None else None
    tls, refusal = host_tls_policy(host, policy)
    assert (tls, bool(refusal)) == expected


# --- DANE ---------------------------------------------------------------------------------------


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_dane_matching(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    _, _, leaf = ca.issue(["mx.example.test"])
    _, _, expired = ca.issue(["mx.example.test"], expired=True)
    chain = [_der(leaf), _der(ca.certificate)]
    ee = [TlsaRecord(3, 1, 1, hashlib.sha256(_spki(leaf)).digest())]
    assert dane.check_chain(ee, chain, "mx.example.test") is None
    assert dane.check_chain(ee, [_der(leaf)], "any.name.at.all") is None  # DANE-EE: names are not checked
    assert dane.check_chain([TlsaRecord(3, 0, 2, hashlib.sha512(_der(leaf)).digest())], chain, "x") is None
    assert dane.check_chain([TlsaRecord(3, 0, 0, _der(leaf))], chain, "x") is None
    expired_ee = [TlsaRecord(3, 1, 1, hashlib.sha256(_spki(expired)).digest())]
    assert dane.check_chain(expired_ee, [_der(expired)], "mx.example.test") is None  # nor dates
    assert dane.check_chain(ee, [_der(expired)], "mx.example.test") is not None  # another key

    ta = [TlsaRecord(2, 0, 1, hashlib.sha256(_der(ca.certificate)).digest())]
    assert dane.check_chain(ta, chain, "mx.example.test") is None
    assert "does not validate" in (dane.check_chain(ta, chain, "other.example.test") or "")  # DANE-TA: the name
    assert "does not validate" in (dane.check_chain(ta, [_der(expired), _der(ca.certificate)], "mx.example.test")
                                   or "")  # and the dates
    assert dane.check_chain(ta, [_der(leaf)], "mx.example.test") is not None  # the anchor was not sent
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    assert dane.check_chain(ta, chain, "mx.example.test", now=later) is not None

    # PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1.3), and so are unknown parameters.
    unusable = [TlsaRecord(1, 1, 1, ee[0].data), TlsaRecord(0, 0, 1, ta[0].data), TlsaRecord(3, 2, 1, ee[0].data),
                TlsaRecord(3, 1, 3, ee[0].data)]
    assert dane.usable_records(unusable) == ()
    assert dane.check_chain(unusable, chain, "mx.example.test") == "no usable TLSA record"


@given(st.text(max_size=300))
def test_any_policy_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        policy = parse_policy(text, "x")
    except PolicyError:
        return
    assert policy.mode in StsMode and 0 <= policy.max_age <= 31_557_600
    assert policy.mode is StsMode.NONE or policy.mx


@given(st.lists(st.text(max_size=60), max_size=3))
def test_any_txt_records_give_an_id_or_none(records: list[str]) -> None:
    policy_id = parse_sts_record(records)
    assert policy_id is None or (policy_id.isalnum() and policy_id.isascii() and len(policy_id) <= 32)


@given(st.lists(st.tuples(st.integers(0, 65535), st.sampled_from(["", "a.test", "b.test", "c.test"])), max_size=8),
       st.integers(0, 1000))
def test_mx_order_keeps_every_host_once_in_preference_order(entries: list[tuple[int, str]], seed: int) -> None:
    records = [MxRecord(preference, host) for preference, host in entries]
    ordered = order_mx(records, random.Random(seed))
    hosts = [host for host, _ in ordered]
    assert sorted(hosts) == sorted({host for _, host in entries if host})
    assert [p for _, p in ordered] == sorted(p for _, p in ordered)
    assert all(p == min(q for q, h in entries if h == host) for host, p in ordered)
