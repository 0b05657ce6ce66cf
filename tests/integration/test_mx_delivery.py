"""The mx transport against real peers on loopback: a dnslib authoritative server for the `.test` zone,
receiving MTAs on 127.X.Y.n:25 (aiosmtpd sinks, scripted peers that tempfail or drop, Postfix's smtp-sink),
and an HTTPS MTA-STS policy server on :443 with a certificate from the test CA."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from integration.smtp_peers import HANG, RecordingSink, ScriptedPeer
from mx_peers import (
    AuthoritativeDns,
    PolicyServer,
    SmtpSinkProcess,
    TestCA,
    has_ipv6_loopback,
    loopback_prefix,
    requires_root,
    self_signed_context,
    smtp_sink_path,
)
from posthouse.server.config import DestinationLimit, DestinationLimits, parse_source_pools
from posthouse.server.delivery.base import Envelope
from posthouse.server.delivery.dns import Resolver
from posthouse.server.delivery.mta_sts import MtaSts
from posthouse.server.delivery.mx import MxSettings, MxTransport

pytestmark = requires_root

MESSAGE = b"From: app@sender.test\r\nTo: someone\r\nSubject: hi\r\n\r\nHello over MX.\r\n"


class Net:
    """Addresses 127.X.Y.n of this test, and the zone records that name them."""

    def __init__(self) -> None:
        self.prefix = loopback_prefix()

    def ip(self, n: int) -> str:
        return f"{self.prefix}.{n}"


@pytest.fixture
def net() -> Net:
    return Net()


@pytest.fixture
def dns() -> Iterator[AuthoritativeDns]:
    with AuthoritativeDns() as server:
        yield server


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def make_transport(dns: AuthoritativeDns, ca: TestCA | None = None, *, dnssec: bool = False, mta_sts: bool = True,
                   **options: Any) -> MxTransport:
    resolver = Resolver([("127.0.0.1", dns.port)], timeout=3, dnssec=dnssec)
    context = ssl.create_default_context(cafile=str(ca.ca_file)) if ca is not None else None
    policies = MtaSts(resolver, ssl_context=context, timeout=5) if mta_sts else None
    settings: dict[str, Any] = {"ehlo_name": "posthouse.test", "connect_timeout": 5.0, "command_timeout": 5.0,
                                "idle_seconds": 5.0, "ca_file": str(ca.ca_file) if ca is not None else ""}
    settings.update(options)
    return MxTransport(MxSettings(**settings), resolver, policies, rng=random.Random(7))


@contextlib.asynccontextmanager
async def closing(transport: MxTransport) -> AsyncIterator[MxTransport]:
    """The transport, closed (its kept connections quit) before the peers it talked to stop."""
    try:
        yield transport
    finally:
        await transport.close()


def mx(dns: AuthoritativeDns, domain: str, *hosts: tuple[int, str, str]) -> None:
    """MX records for `domain`, each (preference, host label, address)."""
    for preference, label, address in hosts:
        name = f"{label}.{domain}"
        dns.add(f"{domain}. 300 IN MX {preference} {name}.")
        kind = "AAAA" if ":" in address else "A"
        dns.add(f"{name}. 300 IN {kind} {address}")


def envelope(*recipients: str, stream: str = "outbound") -> Envelope:
    return Envelope("bounces@sender.test", list(recipients), MESSAGE, stream)


# --- Routing: preference, fallbacks, null MX, DNS failures ----------------------------------------


async def test_delivers_to_the_most_preferred_mx_with_opportunistic_tls(
        net: Net, dns: AuthoritativeDns, ca: TestCA) -> None:
    mx(dns, "a.test", (20, "mx2", net.ip(2)), (10, "mx1", net.ip(1)))
    untrusted = self_signed_context(ca.directory, "mx1.a.test")  # opportunistic TLS checks no certificate
    with RecordingSink(host=net.ip(1), port=25, tls_context=untrusted) as first, \
            RecordingSink(host=net.ip(2), port=25) as second:
        async with closing(make_transport(dns, ca)) as transport:
            result = await transport.send(envelope("one@a.test", "two@a.test"))
    assert {r: reply.code for r, reply in result.replies.items()} == {"one@a.test": 250, "two@a.test": 250}
    assert (result.server, result.ip) == ("mx1.a.test", net.ip(1))
    assert len(first.messages) == 1 and not second.messages
    message = first.messages[0]
    assert message.rcpt_tos == ["one@a.test", "two@a.test"]  # one transaction for the domain
    assert message.tls and message.helo == "posthouse.test"
    assert message.data.endswith(b"Hello over MX.\r\n")


async def test_a_tempfailing_host_passes_the_recipients_to_the_next_mx(
        net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "b.test", (10, "busy", net.ip(1)), (20, "ok", net.ip(2)))
    async with ScriptedPeer(host=net.ip(1), port=25, replies={"GREETING": ["421 4.7.0 Too busy"] * 5}) as busy:
        with RecordingSink(host=net.ip(2), port=25) as ok:
            async with closing(make_transport(dns)) as transport:
                result = await transport.send(envelope("x@b.test"))
    assert result.replies["x@b.test"].code == 250
    assert result.destinations["x@b.test"] == ("ok.b.test", net.ip(2))
    assert busy.connections == 1 and len(ok.messages) == 1


async def test_a_dropped_connection_and_a_421_mid_transaction_move_on(
        net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "c.test", (10, "drop", net.ip(1)), (20, "closing", net.ip(2)), (30, "ok", net.ip(3)))
    async with ScriptedPeer(host=net.ip(1), port=25, drop_in_data=True) as dropping, \
            ScriptedPeer(host=net.ip(2), port=25, replies={"RCPT": ["421 4.3.2 Shutting down"]}) as shutting:
        with RecordingSink(host=net.ip(3), port=25) as ok:
            async with closing(make_transport(dns)) as transport:
                result = await transport.send(envelope("y@c.test"))
    assert result.replies["y@c.test"].code == 250
    assert result.destinations["y@c.test"] == ("ok.c.test", net.ip(3))
    assert dropping.connections == 1 and shutting.connections == 1
    assert not dropping.messages and not shutting.messages and len(ok.messages) == 1


async def test_replies_to_recipients_are_theirs_and_do_not_move_on(
        net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "d.test", (10, "mx1", net.ip(1)), (20, "mx2", net.ip(2)))
    rcpt_replies = {"gone@d.test": "550 5.1.1 No such user", "grey@d.test": "450 4.2.0 Greylisted, try again later"}
    async with ScriptedPeer(host=net.ip(1), port=25, rcpt_replies=rcpt_replies) as first:
        with RecordingSink(host=net.ip(2), port=25) as second:
            async with closing(make_transport(dns)) as transport:
                result = await transport.send(envelope("gone@d.test", "grey@d.test", "fine@d.test"))
    codes = {r: (reply.code, reply.enhanced) for r, reply in result.replies.items()}
    assert codes == {"gone@d.test": (550, "5.1.1"), "grey@d.test": (450, "4.2.0"), "fine@d.test": (250, "2.0.0")}
    assert set(result.destinations.values()) == {("mx1.d.test", net.ip(1))}
    assert [m.rcpt_tos for m in first.messages] == [["fine@d.test"]] and not second.messages


async def test_every_host_failing_leaves_a_transient_reply_naming_the_last_failure(
        net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "e.test", (10, "mx1", net.ip(1)), (20, "mx2", net.ip(2)))
    # Nothing listens on the second address: the connection is refused.
    async with ScriptedPeer(host=net.ip(1), port=25, replies={"GREETING": ["554 5.7.1 Go away"] * 2}), \
            closing(make_transport(dns)) as transport:
        result = await transport.send(envelope("z@e.test"))
        assert transport.connections_opened == 2
        # The address that could not be reached is left alone for a while; the refusing one is asked again.
        again = await transport.send(envelope("w@e.test"))
        assert transport.connections_opened == 3
    reply = result.replies["z@e.test"]
    assert reply.code == 451 and reply.enhanced == "4.4.1" and f"mx2.e.test[{net.ip(2)}]" in reply.text
    assert result.destinations["z@e.test"] == ("mx2.e.test", net.ip(2))
    assert again.replies["w@e.test"] == reply


async def test_null_mx_bounces_without_trying(net: Net, dns: AuthoritativeDns) -> None:
    dns.add("nomail.test. 300 IN MX 0 .")
    async with closing(make_transport(dns)) as transport:
        result = await transport.send(envelope("anyone@nomail.test"))
        reply = result.replies["anyone@nomail.test"]
        assert (reply.code, reply.enhanced) == (556, "5.1.10")
        assert transport.connections_opened == 0
        assert not any(name == "nomail.test" and kind in ("A", "AAAA") for name, kind in dns.queries)


async def test_without_mx_the_domain_address_is_used(net: Net, dns: AuthoritativeDns) -> None:
    dns.add(f"plain.test. 300 IN A {net.ip(5)}")
    with RecordingSink(host=net.ip(5), port=25) as sink:
        async with closing(make_transport(dns)) as transport:
            result = await transport.send(envelope("a@plain.test"))
    assert result.replies["a@plain.test"].code == 250
    assert (result.server, result.ip) == ("plain.test", net.ip(5))
    assert len(sink.messages) == 1


@pytest.mark.parametrize(("setup", "domain", "expected"), [
    (lambda dns: None, "missing.test", (550, "5.1.2")),
    (lambda dns: dns.add("bare.test. 300 IN TXT \"no mail here\""), "bare.test", (550, "5.4.4")),
    (lambda dns: dns.add("dangling.test. 300 IN MX 10 nowhere.dangling.test."), "dangling.test", (550, "5.4.4")),
    (lambda dns: dns.failing.add("broken.test"), "broken.test", (451, "4.4.3")),
])
async def test_dns_outcomes(dns: AuthoritativeDns, setup: Any, domain: str,
                            expected: tuple[int, str]) -> None:
    setup(dns)
    async with closing(make_transport(dns)) as transport:
        result = await transport.send(envelope(f"x@{domain}"))
        reply = result.replies[f"x@{domain}"]
        assert (reply.code, reply.enhanced) == expected
        assert transport.connections_opened == 0


async def test_answers_are_cached_for_their_ttl(net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "cached.test", (10, "mx", net.ip(1)))
    with RecordingSink(host=net.ip(1), port=25) as sink:
        async with closing(make_transport(dns)) as transport:
            await asyncio.gather(*(transport.send(envelope(f"r{i}@cached.test")) for i in range(5)))
            await transport.send(envelope("again@cached.test"))
            await transport.send(envelope("x@missing.test"))
            await transport.send(envelope("y@missing.test"))
    assert len(sink.messages) == 6
    assert dns.queries[("cached.test", "MX")] == 1 and dns.queries[("mx.cached.test", "A")] == 1
    assert dns.queries[("missing.test", "MX")] == 1  # the negative answer too (the zone's SOA minimum)


async def test_a_domain_route_is_kept_no_longer_than_its_answers_ttl(net: Net, dns: AuthoritativeDns) -> None:
    dns.add("short.test. 5 IN MX 10 mx.short.test.", f"mx.short.test. 300 IN A {net.ip(1)}")
    now = [1000.0]
    resolver = Resolver([("127.0.0.1", dns.port)], timeout=3, clock=lambda: now[0])
    transport = MxTransport(MxSettings(ehlo_name="posthouse.test", connect_timeout=5.0, command_timeout=5.0),
                            resolver, None, clock=lambda: now[0])
    with RecordingSink(host=net.ip(1), port=25) as sink:
        async with closing(transport):
            await transport.send(envelope("a@short.test"))
            now[0] += 4
            await transport.send(envelope("b@short.test"))
            assert dns.queries[("short.test", "MX")] == 1
            now[0] += 2  # past the MX record's 5 s, within the address record's 300 s
            await transport.send(envelope("c@short.test"))
    assert dns.queries[("short.test", "MX")] == 2 and dns.queries[("mx.short.test", "A")] == 1
    assert len(sink.messages) == 3


async def test_recipients_are_split_by_domain_one_transaction_each(
        net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "one.test", (10, "mx", net.ip(1)))
    mx(dns, "two.test", (10, "mx", net.ip(2)))
    with RecordingSink(host=net.ip(1), port=25) as one, RecordingSink(host=net.ip(2), port=25) as two:
        async with closing(make_transport(dns)) as transport:
            result = await transport.send(envelope("a@one.test", "b@two.test", "c@ONE.test", "bad@"))
    assert [m.rcpt_tos for m in one.messages] == [["a@one.test", "c@ONE.test"]]
    assert [m.rcpt_tos for m in two.messages] == [["b@two.test"]]
    assert result.destinations == {"a@one.test": ("mx.one.test", net.ip(1)), "c@ONE.test": ("mx.one.test", net.ip(1)),
                                   "b@two.test": ("mx.two.test", net.ip(2))}
    assert result.replies["bad@"].code == 553


async def test_too_many_recipients_go_in_a_second_transaction(
        net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "many.test", (10, "mx", net.ip(1)))
    replies = {"RCPT": ["250 2.1.5 Ok", "250 2.1.5 Ok", "452 4.5.3 Too many recipients"]}
    async with ScriptedPeer(host=net.ip(1), port=25, replies=replies) as peer, \
            closing(make_transport(dns)) as transport:
        result = await transport.send(envelope("a@many.test", "b@many.test", "c@many.test"))
    assert all(reply.code == 250 for reply in result.replies.values())
    assert [m.rcpt_tos for m in peer.messages] == [["a@many.test", "b@many.test"], ["c@many.test"]]
    assert peer.connections == 1


# --- Connections and limits ---------------------------------------------------------------------


async def test_connections_are_reused_up_to_the_messages_per_connection(
        net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "reuse.test", (10, "mx", net.ip(1)))
    limits = DestinationLimits(DestinationLimit(20, 100), DestinationLimit(20, 100),
                               {"reuse.test": DestinationLimit(5, 2)})
    with RecordingSink(host=net.ip(1), port=25) as sink:
        async with closing(make_transport(dns, limits=limits)) as transport:
            for i in range(5):
                assert (await transport.send(envelope(f"r{i}@reuse.test"))).replies[f"r{i}@reuse.test"].code == 250
    assert len(sink.messages) == 5
    assert sink.connections == 3  # 2 + 2 + 1 messages


async def test_connections_to_a_domain_are_limited(net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "limited.test", (10, "mx", net.ip(1)))
    limits = DestinationLimits(DestinationLimit(20, 100), DestinationLimit(20, 100),
                               {"limited.test": DestinationLimit(2, 100)})
    with RecordingSink(host=net.ip(1), port=25) as sink:
        async with closing(make_transport(dns, limits=limits)) as transport:
            results = await asyncio.gather(*(transport.send(envelope(f"r{i}@limited.test")) for i in range(8)))
    assert all(r.replies[f"r{i}@limited.test"].code == 250 for i, r in enumerate(results))
    assert len(sink.messages) == 8
    assert transport.connections_opened == sink.connections == 2


async def test_domains_sharing_an_mx_share_its_limit_and_its_connections(net: Net, dns: AuthoritativeDns) -> None:
    for name in ("left.test", "right.test"):
        dns.add(f"{name}. 300 IN MX 10 mx.shared.test.")
    dns.add(f"mx.shared.test. 300 IN A {net.ip(1)}")
    limits = DestinationLimits(DestinationLimit(20, 100), DestinationLimit(20, 100),
                               hosts=(("*.shared.test", DestinationLimit(1, 100)),))
    with RecordingSink(host=net.ip(1), port=25) as sink:
        async with closing(make_transport(dns, limits=limits)) as transport:
            results = await asyncio.gather(*(transport.send(envelope(f"r{i}@left.test", f"r{i}@right.test"))
                                             for i in range(6)))
    assert all(reply.code == 250 for result in results for reply in result.replies.values())
    assert len(sink.messages) == 12
    assert sink.connections == transport.connections_opened == 1


async def test_a_busy_destination_defers_after_the_wait(net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "slow.test", (10, "mx", net.ip(1)))
    limits = DestinationLimits(DestinationLimit(1, 100), DestinationLimit(20, 100))
    async with ScriptedPeer(host=net.ip(1), port=25, replies={"DATA": [HANG]}), \
            closing(make_transport(dns, limits=limits, destination_wait=0.3, command_timeout=2.0)) as transport:
        first, second = await asyncio.gather(transport.send(envelope("a@slow.test")),
                                             transport.send(envelope("b@slow.test")))
    assert second.replies["b@slow.test"].enhanced == "4.4.5"
    assert first.replies["a@slow.test"].code == 451  # the hung host timed out


async def test_source_address_and_per_stream_pools(net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "src.test", (10, "mx", net.ip(1)))
    sources = parse_source_pools(net.ip(200), f"broadcast={net.ip(201)}/bulk.sender.test")
    with RecordingSink(host=net.ip(1), port=25) as sink:
        async with closing(make_transport(dns, sources=sources)) as transport:
            await transport.send(envelope("a@src.test", stream="outbound"))
            await transport.send(envelope("b@src.test", stream="broadcast"))
    assert [(m.peer, m.helo) for m in sink.messages] == [(net.ip(200), "posthouse.test"),
                                                         (net.ip(201), "bulk.sender.test")]


async def test_opportunistic_tls_that_fails_falls_back_to_plaintext(
        net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "oldtls.test", (10, "mx", net.ip(1)))
    # The peer says yes to STARTTLS and then goes on speaking SMTP: the handshake fails.
    extensions = ("PIPELINING", "STARTTLS", "ENHANCEDSTATUSCODES")
    async with ScriptedPeer(host=net.ip(1), port=25, extensions=extensions,
                            replies={"STARTTLS": ["220 2.0.0 Ready to start TLS"]}) as peer, \
            closing(make_transport(dns, command_timeout=1.0)) as transport:
        first = await transport.send(envelope("a@oldtls.test"))
        second = await transport.send(envelope("b@oldtls.test"))
    assert first.replies["a@oldtls.test"].code == 250 and second.replies["b@oldtls.test"].code == 250
    assert len(peer.messages) == 2
    assert peer.connections == 2  # the failed handshake, then one plaintext connection reused
    assert sum(command == "STARTTLS" for command in peer.commands) == 1


@pytest.mark.skipif(smtp_sink_path() is None, reason="Postfix's smtp-sink is not installed (apt-get install postfix)")
async def test_postfix_smtp_sink_receives_every_message(net: Net, dns: AuthoritativeDns) -> None:
    mx(dns, "sink.test", (10, "mx", net.ip(9)))
    with SmtpSinkProcess(net.ip(9)) as sink:
        async with closing(make_transport(dns)) as transport:
            results = await asyncio.gather(*(transport.send(envelope(f"r{i}@sink.test", f"s{i}@sink.test"))
                                             for i in range(40)))
            assert all(reply.code == 250 for result in results for reply in result.replies.values())
            await transport.close()
            assert sink.count_received() == 40


def _postfix_instance() -> Any:
    if smtp_sink_path() is None:
        pytest.skip("Postfix is not installed (bench/install-peers.sh installs it)")
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    from postfix_peer import PostfixInstance

    return PostfixInstance


async def test_a_real_postfix_as_the_mx(dns: AuthoritativeDns) -> None:
    """Postfix on 127.0.0.1 (its bench instance's fixed address, so on another port: `mx_port`) takes one
    recipient, refuses the other at RCPT; it offers PIPELINING, so the transaction is pipelined."""
    postfix_instance = _postfix_instance()
    extra = ("transport_maps = inline:{ { pf.test = discard:taken } }\n"
             "smtpd_recipient_restrictions = check_recipient_access inline:{ { gone@pf.test = 550 5.1.1 No such user "
             "here } }, permit_mynetworks, reject\n")
    with postfix_instance(relay_port=9, extra_config=extra) as postfix:
        mx(dns, "pf.test", (10, "mx", "127.0.0.1"))
        async with closing(make_transport(dns, port=postfix.listen_port)) as transport:
            result = await transport.send(envelope("ok@pf.test", "gone@pf.test"))
    ok, gone = result.replies["ok@pf.test"], result.replies["gone@pf.test"]
    assert ok.code == 250 and "queued as" in ok.text
    assert (gone.code, gone.enhanced) == (550, "5.1.1") and "No such user here" in gone.text
    assert result.destinations["ok@pf.test"] == ("mx.pf.test", "127.0.0.1")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
async def test_ipv6_mx(dns: AuthoritativeDns) -> None:
    mx(dns, "six.test", (10, "mx", "::1"))
    with RecordingSink(host="::1", port=25) as sink:
        async with closing(make_transport(dns)) as transport:
            result = await transport.send(envelope("a@six.test"))
        async with closing(make_transport(dns, ip_versions=(4,))) as only_v4:
            refused = await only_v4.send(envelope("b@six.test"))
    assert (result.replies["a@six.test"].code, result.ip) == (250, "::1")
    assert len(sink.messages) == 1
    assert refused.replies["b@six.test"].code == 550  # no IPv4 address for the MX host


# --- MTA-STS ------------------------------------------------------------------------------------


async def _sts_setup(net: Net, dns: AuthoritativeDns, ca: TestCA, domain: str, mode: str, mx_pattern: str,
                     policy_id: str = "1") -> PolicyServer:
    dns.add(f'_mta-sts.{domain}. 300 IN TXT "v=STSv1; id={policy_id};"', f"mta-sts.{domain}. 300 IN A {net.ip(100)}")
    server = PolicyServer(net.ip(100), ca.server_context([f"mta-sts.{domain}"]))
    server.policies[f"mta-sts.{domain}"] = (200, "text/plain",
                                            f"version: STSv1\r\nmode: {mode}\r\nmx: {mx_pattern}\r\nmax_age: 86400\r\n")
    return server


async def test_mta_sts_enforce_refuses_a_bad_certificate_and_uses_a_good_one(
        net: Net, dns: AuthoritativeDns, ca: TestCA) -> None:
    mx(dns, "sts.test", (10, "bad", net.ip(1)), (20, "good", net.ip(2)))
    async with await _sts_setup(net, dns, ca, "sts.test", "enforce", "*.sts.test") as policy:
        bad_context = self_signed_context(ca.directory, "bad.sts.test")
        good_context = ca.server_context(["good.sts.test"])
        with RecordingSink(host=net.ip(1), port=25, tls_context=bad_context) as bad, \
                RecordingSink(host=net.ip(2), port=25, tls_context=good_context) as good:
            async with closing(make_transport(dns, ca)) as transport:
                first = await transport.send(envelope("a@sts.test"))
                second = await transport.send(envelope("b@sts.test"))
    assert first.replies["a@sts.test"].code == 250 and second.replies["b@sts.test"].code == 250
    assert first.destinations["a@sts.test"] == ("good.sts.test", net.ip(2))
    assert not bad.messages and len(good.messages) == 2 and all(m.tls for m in good.messages)
    assert policy.requests == ["mta-sts.sts.test"]  # fetched once, then cached


async def test_mta_sts_enforce_with_only_a_bad_host_defers(
        net: Net, dns: AuthoritativeDns, ca: TestCA) -> None:
    mx(dns, "strict.test", (10, "bad", net.ip(1)), (20, "other", net.ip(2)))
    async with await _sts_setup(net, dns, ca, "strict.test", "enforce", "bad.strict.test"):
        with RecordingSink(host=net.ip(1), port=25, tls_context=ca.server_context(["wrong-name.test"])) as bad, \
                RecordingSink(host=net.ip(2), port=25, tls_context=ca.server_context(["other.strict.test"])) as other:
            async with closing(make_transport(dns, ca)) as transport:
                result = await transport.send(envelope("a@strict.test"))
    reply = result.replies["a@strict.test"]
    assert (reply.code, reply.enhanced) == (451, "4.7.5")
    assert not bad.messages and not other.messages
    assert other.connections == 0  # not named by the policy: never connected to


async def test_mta_sts_testing_delivers_anyway(net: Net, dns: AuthoritativeDns, ca: TestCA,
                                               caplog: pytest.LogCaptureFixture) -> None:
    mx(dns, "trial.test", (10, "bad", net.ip(1)))
    async with await _sts_setup(net, dns, ca, "trial.test", "testing", "*.trial.test"):
        with RecordingSink(host=net.ip(1), port=25,
                           tls_context=self_signed_context(ca.directory, "bad.trial.test")) as bad:
            async with closing(make_transport(dns, ca)) as transport:
                with caplog.at_level(logging.WARNING, logger="posthouse.delivery.mx"):
                    result = await transport.send(envelope("a@trial.test"))
    assert result.replies["a@trial.test"].code == 250
    assert len(bad.messages) == 1 and bad.messages[0].tls  # opportunistic TLS after the failed check
    assert any("MTA-STS testing" in record.message for record in caplog.records)


async def test_mta_sts_policy_refetched_when_its_id_changes_and_kept_when_the_fetch_fails(
        net: Net, dns: AuthoritativeDns, ca: TestCA) -> None:
    mx(dns, "roll.test", (10, "mx", net.ip(1)))
    async with await _sts_setup(net, dns, ca, "roll.test", "enforce", "mx.roll.test") as policy:
        with RecordingSink(host=net.ip(1), port=25, tls_context=ca.server_context(["mx.roll.test"])) as sink:
            async with closing(make_transport(dns, ca)) as transport:
                await transport.send(envelope("a@roll.test"))
                # A new id: fetched again; the new policy no longer names the host.
                dns.remove("_mta-sts.roll.test")
                dns.add('_mta-sts.roll.test. 300 IN TXT "v=STSv1; id=2;"')
                transport.forget()
                policy.policies["mta-sts.roll.test"] = (
                    200, "text/plain", "version: STSv1\nmode: enforce\nmx: other.roll.test\nmax_age: 600\n")
                refused = await transport.send(envelope("b@roll.test"))
                # A third id whose policy cannot be fetched: the cached (id 2) policy stays in force.
                dns.remove("_mta-sts.roll.test")
                dns.add('_mta-sts.roll.test. 300 IN TXT "v=STSv1; id=3;"')
                transport.forget()
                policy.policies["mta-sts.roll.test"] = (500, "text/plain", "oops")
                still_refused = await transport.send(envelope("c@roll.test"))
    assert policy.requests == ["mta-sts.roll.test"] * 3
    assert [m.rcpt_tos for m in sink.messages] == [["a@roll.test"]]
    assert refused.replies["b@roll.test"].enhanced == "4.7.5"
    assert still_refused.replies["c@roll.test"].enhanced == "4.7.5"


# --- DANE ---------------------------------------------------------------------------------------


def _spki_sha256(certificate: Any) -> str:
    return hashlib.sha256(certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
                          ).hexdigest()


async def test_dane_ee_and_ta_records_decide_over_the_certificate(
        net: Net, dns: AuthoritativeDns, ca: TestCA) -> None:
    # ee.test: DANE-EE(3) SPKI SHA-256 of a certificate no CA vouches for; its MX must present exactly it.
    # ta.test: DANE-TA(2) full-certificate SHA-256 of the test CA; the MX certificate must chain to it.
    # wrong.test: a TLSA record matching nothing the server sends: refused (4.7.5), never downgraded.
    untrusted = TestCA(ca.directory, "Private CA")
    ee_cert_file, ee_key_file, ee_cert = untrusted.issue(["mx.ee.test"])
    ee_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ee_context.load_cert_chain(ee_cert_file, ee_key_file)
    ca_sha256 = hashlib.sha256(ca.certificate.public_bytes(Encoding.DER)).hexdigest()
    for domain, n, tlsa in (("ee.test", 1, f"3 1 1 {_spki_sha256(ee_cert)}"), ("ta.test", 2, f"2 0 1 {ca_sha256}"),
                            ("wrong.test", 3, "3 1 1 " + "00" * 32)):
        mx(dns, domain, (10, "mx", net.ip(n)))
        dns.add(f"_25._tcp.mx.{domain}. 300 IN TLSA {tlsa}")
        dns.secure.update({domain, f"mx.{domain}", f"_25._tcp.mx.{domain}"})
    with RecordingSink(host=net.ip(1), port=25, tls_context=ee_context) as ee, \
            RecordingSink(host=net.ip(2), port=25, tls_context=ca.server_context(["mx.ta.test"])) as ta, \
            RecordingSink(host=net.ip(3), port=25, tls_context=ca.server_context(["mx.wrong.test"])) as wrong:
        async with closing(make_transport(dns, dnssec=True, mta_sts=False)) as transport:
            result = await transport.send(envelope("a@ee.test", "b@ta.test", "c@wrong.test"))
            # Without the AD bit the same records are not believed: opportunistic delivery to wrong.test.
            dns.secure.clear()
            async with closing(make_transport(dns, dnssec=True, mta_sts=False)) as insecure:
                plain = await insecure.send(envelope("d@wrong.test"))
    assert result.replies["a@ee.test"].code == 250 and result.replies["b@ta.test"].code == 250
    assert (result.replies["c@wrong.test"].code, result.replies["c@wrong.test"].enhanced) == (451, "4.7.5")
    assert "DANE" in result.replies["c@wrong.test"].text
    assert len(ee.messages) == 1 and len(ta.messages) == 1
    assert [m.rcpt_tos for m in wrong.messages] == [["d@wrong.test"]] and plain.replies["d@wrong.test"].code == 250
