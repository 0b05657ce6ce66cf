"""`delivery = "mx"` end to end in one process: POST /email → the queue → the delivery worker → the mx transport →
MTAs on 127.X.Y.n:25 found through a dnslib server; the message details name each recipient's MX host and
address, a null-MX recipient bounces at once, a greylisting host's recipient waits for its retry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from integration.smtp_peers import RecordingSink
from mx_peers import AuthoritativeDns, loopback_prefix, requires_root
from support import async_wait_for

pytestmark = requires_root

PREFIX = loopback_prefix()


def ip(n: int) -> str:
    return f"{PREFIX}.{n}"


@pytest.fixture
def dns() -> Iterator[AuthoritativeDns]:
    records = ["one.example.net. 300 IN MX 10 mx.one.example.net.", f"mx.one.example.net. 300 IN A {ip(1)}",
               "two.example.net. 300 IN MX 10 mx.two.example.net.", f"mx.two.example.net. 300 IN A {ip(2)}",
               "nomail.example.net. 300 IN MX 0 ."]
    with AuthoritativeDns(records) as server:
        yield server


@pytest.fixture(params=["pm_bounces@bounces.sender.test", "off"], ids=["verp", "no-verp"])
def api_settings(request: pytest.FixtureRequest, dns: AuthoritativeDns) -> dict[str, str]:
    return {"delivery": "mx", "dns_nameservers": dns.nameserver, "mx_ehlo_name": "out.sender.test",
            "return_path": request.param, "retry_schedule": "1h", "smtp_hostname": "sender.test"}


async def test_each_recipient_goes_to_its_own_mx_and_the_details_say_where(api: Any,
                                                                          api_settings: dict[str, str]) -> None:
    with RecordingSink(host=ip(1), port=25) as one, RecordingSink(host=ip(2), port=25) as two:
        one.rcpt_replies["grey@one.example.net"] = "450 4.2.0 Greylisted, come back later"
        response = await api.client.post("/email", headers=api.server_headers, json={
            "From": "app@example.com", "To": "ann@one.example.net, bob@two.example.net",
            "Cc": "grey@one.example.net, x@nomail.example.net", "Subject": "Over MX", "TextBody": "Hello."})
        assert response.status_code == 200, response.text
        message_id = response.json()["MessageID"]
        await api.runtime.start_worker()

        async def settled() -> dict[str, Any] | None:
            body = (await api.client.get(f"/messages/outbound/{message_id}/details",
                                         headers=api.server_headers)).json()
            events = [e for e in body["MessageEvents"] if e["Type"] in ("Delivered", "Bounced", "Transient")]
            return body if len(events) == 4 else None

        body = await async_wait_for(settled, timeout=20)
        await api.runtime.stop()
    events = {e["Recipient"]: e for e in body["MessageEvents"] if e["Type"] in ("Delivered", "Bounced", "Transient")}
    assert events["ann@one.example.net"]["Type"] == "Delivered"
    assert events["ann@one.example.net"]["Details"]["DestinationServer"] == "mx.one.example.net"
    assert events["ann@one.example.net"]["Details"]["DestinationIP"] == ip(1)
    assert events["bob@two.example.net"]["Type"] == "Delivered"
    assert events["bob@two.example.net"]["Details"]["DestinationServer"] == "mx.two.example.net"
    assert events["bob@two.example.net"]["Details"]["DestinationIP"] == ip(2)
    assert events["grey@one.example.net"]["Type"] == "Transient"
    assert events["grey@one.example.net"]["Details"]["DestinationServer"] == "mx.one.example.net"
    assert "Greylisted" in events["grey@one.example.net"]["Details"]["DeliveryMessage"]
    assert events["x@nomail.example.net"]["Type"] == "Bounced"  # (and SubscriptionChanged: a HardBounce)
    assert "5.1.10" in events["x@nomail.example.net"]["Details"]["Summary"]
    assert [sorted(m.rcpt_tos) for m in two.messages] == [["bob@two.example.net"]]
    assert all(m.helo == "out.sender.test" for m in one.messages + two.messages)
    if api_settings["return_path"] == "off":
        # One envelope for the message, split by domain: ann and grey in one transaction (grey refused at RCPT).
        assert [sorted(m.rcpt_tos) for m in one.messages] == [["ann@one.example.net"]]
        assert {m.mail_from for m in one.messages + two.messages} == {"app@example.com"}
    else:
        assert all(m.mail_from.startswith("pm_bounces+") for m in one.messages + two.messages)
    bounces = (await api.client.get("/bounces", params={"count": 10, "offset": 0},
                                    headers=api.server_headers)).json()
    assert [(b["Email"], b["Type"]) for b in bounces["Bounces"]] == [("x@nomail.example.net", "HardBounce")]
