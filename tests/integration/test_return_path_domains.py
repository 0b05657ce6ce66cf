"""A sending domain's own Return-Path domain (docs/postmark-api.md §8.4): once its CNAME is verified, its mail goes
out with the VERP envelope sender there, and the SMTP listener takes the bounces that come back to it without
AUTH, as for our own return-path domain. The real runtime relays to a recording SMTP sink; DNS is a dnslib
server on loopback; the bounce is sent to Posthouse's SMTP listener with smtplib, as a remote MTA would."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from email.utils import parseaddr
from typing import Any

import pytest

from integration.dns_zone import ZoneServer
from integration.smtp_peers import RecordingSink
from posthouse.server.smtp.server import Listener
from support import async_wait_for

BOUNCE_DOMAIN = "bounces.posthouse-mail.net"
MESSAGE = {"To": "buyer@example.net", "Subject": "Your order", "TextBody": "Thanks"}


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with ZoneServer() as server:
        yield server


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink() as recording:
        yield recording


@pytest.fixture
def api_settings(zone: ZoneServer, sink: RecordingSink) -> dict[str, str]:
    return {"dns_nameservers": zone.nameserver, "return_path": f"pm_bounces@{BOUNCE_DOMAIN}",
            "delivery": "relay", "relay_url": f"smtp://127.0.0.1:{sink.port}", "retry_schedule": "300ms",
            "poll_interval": "200ms"}


@pytest.fixture
async def smtp_port(api: Any) -> AsyncIterator[int]:
    server = api.runtime.smtp_server()
    ((_, port),) = await server.start([Listener("127.0.0.1", 0)])
    try:
        yield port
    finally:
        await server.stop(grace=2)


async def domain_with_return_path(api: Any, zone: ZoneServer, name: str, return_path: str) -> dict[str, Any]:
    created = await api.client.post("/domains", headers=api.account_headers,
                                    json={"Name": name, "ReturnPathDomain": return_path})
    assert created.status_code == 200, created.text
    zone.cname(return_path, BOUNCE_DOMAIN)
    verified = await api.client.put(f"/domains/{created.json()['ID']}/verifyReturnPath", headers=api.account_headers)
    assert verified.json()["ReturnPathDomainVerified"] is True, verified.text
    return dict(verified.json())


def dsn(to: str, failed: str) -> bytes:
    """A delivery status notification (RFC 3464) as a remote MTA sends it back to the return path."""
    return (f"From: MAILER-DAEMON@mx.example.net\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
            "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
            f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            "Diagnostic-Code: smtp; 550 5.1.1 No such user\r\n\r\n--b--\r\n").encode()


def bounce_to(port: int, return_path: str, data: bytes) -> tuple[int, bytes]:
    """An unauthenticated client (a remote MTA) sends a bounce to a return path."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("mx.example.net")
        client.mail("")
        code, text = client.rcpt(return_path)
        if code != 250:
            return code, text
        return client.data(data)


async def test_mail_from_a_verified_return_path_domain_bounces_back_through_it(
        api: Any, zone: ZoneServer, sink: RecordingSink, smtp_port: int) -> None:
    await domain_with_return_path(api, zone, "shop.example.com", "pm-bounces.shop.example.com")
    await api.runtime.start_worker()
    for sender in ("Shop <orders@shop.example.com>", "someone@example.org"):
        sent = await api.client.post("/email", headers=api.server_headers, json={**MESSAGE, "From": sender})
        assert sent.status_code == 200, sent.text

    async def both_arrived() -> bool:
        return len(sink.messages) == 2

    await async_wait_for(both_arrived, timeout=15)
    by_from = {parseaddr(message_from_bytes(m.data)["From"])[1]: m.mail_from for m in sink.messages}
    shop = by_from["orders@shop.example.com"]
    assert re.fullmatch(r"pm_bounces\+[0-9a-f]{1,16}[a-z2-7]{13}@pm-bounces\.shop\.example\.com", shop), shop
    assert by_from["someone@example.org"].endswith(f"@{BOUNCE_DOMAIN}")  # no domain of its own: ours

    code, text = await asyncio.to_thread(bounce_to, smtp_port, shop, dsn(shop, "buyer@example.net"))
    assert (code, text) == (250, b"2.0.0 Ok: bounce recorded")

    async def bounced() -> list[dict[str, Any]]:
        found = await api.client.get("/bounces", params={"count": 10, "offset": 0}, headers=api.server_headers)
        return list(found.json()["Bounces"])

    [bounce] = await async_wait_for(bounced)
    assert (bounce["Type"], bounce["Email"], bounce["From"]) == ("HardBounce", "buyer@example.net",
                                                                 "orders@shop.example.com")
    # The token is the proof: a made-up one at the same domain names nobody.
    forged = shop.replace("pm_bounces+", "pm_bounces+1").split("@")[0] + "@pm-bounces.shop.example.com"
    code, text = await asyncio.to_thread(bounce_to, smtp_port, forged, dsn(forged, "buyer@example.net"))
    assert code == 550, text


async def test_the_listener_takes_bounces_for_stored_return_path_domains_only(
        api: Any, zone: ZoneServer, smtp_port: int) -> None:
    code, _ = await asyncio.to_thread(bounce_to, smtp_port, "pm_bounces+1abc@pm-bounces.late.example.com", b"x")
    assert code == 530  # not a return-path domain of ours: a relay attempt, AUTH required
    # Added while the listener runs: the next connection knows it (the set is refreshed as clients connect).
    await domain_with_return_path(api, zone, "late.example.com", "pm-bounces.late.example.com")
    address = "pm_bounces+1abcdefghijklmnopq@pm-bounces.late.example.com"
    code, text = await asyncio.to_thread(bounce_to, smtp_port, address, dsn(address, "buyer@example.net"))
    assert code == 550 and b"No such return path" in text  # RCPT taken; a token that is not ours is refused
    code, _ = await asyncio.to_thread(bounce_to, smtp_port, f"pm_bounces+1abc@{BOUNCE_DOMAIN}", b"x")
    assert code != 530
