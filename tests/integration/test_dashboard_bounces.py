"""The dashboard's bounces pages over HTTP (httpx over ASGI, the real runtime, both databases): a stream's
bounces with the API's filters (type, part of the address, inactive), one bounce with its dump, and reactivation
with `PUT /bounces/{id}/activate`'s rules (docs/postmark-api.md §5) — what the API then answers agrees."""

from __future__ import annotations

import re
from typing import Any

from integration.dashboard_pages import element, operator, server_id, text_of
from posthouse.server.domain.statuses import BounceType
from posthouse.server.services import notifications
from posthouse.server.store.base import BounceRecord

DSN = ("Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; {email}\r\nAction: failed\r\n"
       "Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <{email}>: user unknown\r\n")


async def bounce(api: Any, bounce_type: BounceType, email: str, *, stream: str = "outbound") -> None:
    """A bounce as the bounce receiver records one, with its report kept as the dump."""
    record = BounceRecord(
        server_id=await server_id(api), message_id=None, stream=stream, type=bounce_type.type_name,
        type_code=bounce_type.code, email=email, sender="app@example.com", subject=f"Hello {email}", tag="welcome",
        description=bounce_type.display_name, details=f"550 5.1.1 <{email}>: user unknown",
        bounced_at=api.runtime.clock.micros(), inactive=bounce_type.deactivates,
        can_activate=bounce_type is not BounceType.SPAM_COMPLAINT, dump=DSN.format(email=email))
    await api.runtime.store.record_bounces(
        [(record, None, [notifications.bounce_event(record, {})], notifications.suppression_for(record, None, {}))])


async def bounce_id(api: Any, email: str) -> int:
    found = await api.client.get("/bounces", params={"count": 10, "offset": 0, "emailfilter": email},
                                 headers=api.server_headers)
    return int(found.json()["Bounces"][0]["ID"])


def listed(page: str) -> list[tuple[str, str]]:
    """(type, address) of each row of the list."""
    rows = re.findall(r"<tr>\s*<td><a [^>]*>(.*?)</a></td>\s*<td class=\"address\">(.*?)</td>", page, re.S)
    return [(text_of(t), text_of(a)) for t, a in rows]


async def test_the_list_filters_as_the_api_does(api: Any) -> None:
    await operator(api)
    sid = await server_id(api)
    base = f"/ui/servers/{sid}/streams/outbound/bounces"
    await bounce(api, BounceType.HARD_BOUNCE, "gone@example.com")
    await bounce(api, BounceType.SOFT_BOUNCE, "full@example.com")
    await bounce(api, BounceType.SPAM_COMPLAINT, "angry@example.com")
    await bounce(api, BounceType.HARD_BOUNCE, "other@example.com", stream="broadcast")
    page = await api.client.get(base)
    assert page.status_code == 200, page.text
    assert sorted(listed(page.text)) == [("HardBounce", "gone@example.com"), ("SoftBounce", "full@example.com"),
                                         ("SpamComplaint", "angry@example.com")]
    assert "3 bounces." in text_of(page.text)
    assert listed((await api.client.get(base, params={"type": "hardbounce"})).text) == \
        [("HardBounce", "gone@example.com")]
    assert listed((await api.client.get(base, params={"email": "FULL"})).text) == [("SoftBounce", "full@example.com")]
    assert sorted(a for _, a in listed((await api.client.get(base, params={"inactive": "yes"})).text)) == \
        ["angry@example.com", "gone@example.com"]
    assert listed((await api.client.get(base, params={"inactive": "no"})).text) == [("SoftBounce", "full@example.com")]
    none = await api.client.get(base, params={"type": "Transient"})
    assert "No bounces match these filters." in text_of(none.text)
    bad = await api.client.get(base, params={"type": "Grumpy"})
    assert bad.status_code == 400 and "Invalid bounce type: 'Grumpy'." in text_of(bad.text)
    assert listed((await api.client.get(f"/ui/servers/{sid}/streams/broadcast/bounces")).text) == \
        [("HardBounce", "other@example.com")]


async def test_a_bounce_its_dump_and_reactivating_its_address(api: Any) -> None:
    csrf = await operator(api)
    sid = await server_id(api)
    await bounce(api, BounceType.HARD_BOUNCE, "gone@example.com")
    await bounce(api, BounceType.SPAM_COMPLAINT, "angry@example.com")
    hard, spam = await bounce_id(api, "gone@example.com"), await bounce_id(api, "angry@example.com")

    page = await api.client.get(f"/ui/servers/{sid}/bounces/{hard}")
    assert page.status_code == 200, page.text
    main = element(page.text, "main")
    assert "Hard bounce gone@example.com" in main
    assert "550 5.1.1 <gone@example.com>: user unknown" in main and "inactive (not sent to)" in main
    dump = re.search(r'<pre class="raw"[^>]*>(.*?)</pre>', page.text, re.S)
    assert dump and text_of(dump.group(1)).startswith("Reporting-MTA: dns; mx.example.com")
    assert "Reactivate gone@example.com" in main

    done = await api.client.post(f"/ui/servers/{sid}/bounces/{hard}/activate", data={"csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/ui/servers/{sid}/bounces/{hard}?done=activated"
    after = element((await api.client.get(done.headers["location"])).text, "main")
    assert "gone@example.com is active again" in after and "Reactivate gone@example.com" not in after
    answer = (await api.client.get(f"/bounces/{hard}", headers=api.server_headers)).json()
    assert answer["Inactive"] is False
    dumped = await api.client.get("/message-streams/outbound/suppressions/dump", headers=api.server_headers)
    assert [s["EmailAddress"] for s in dumped.json()["Suppressions"]] == ["angry@example.com"]

    # A spam complaint offers no reactivation, and a crafted form is refused with Postmark's reason.
    complaint = element((await api.client.get(f"/ui/servers/{sid}/bounces/{spam}")).text, "main")
    assert "cannot be reactivated" in complaint and "Reactivate angry@example.com" not in complaint
    refused = await api.client.post(f"/ui/servers/{sid}/bounces/{spam}/activate", data={"csrf_token": csrf})
    assert refused.status_code == 400
    assert element(refused.text, "activate-error").startswith("Cannot activate bounce.")
    assert (await api.client.get(f"/bounces/{spam}", headers=api.server_headers)).json()["Inactive"] is True

    for missing in ("999999", "abc", "99999999999999999999"):
        assert (await api.client.get(f"/ui/servers/{sid}/bounces/{missing}")).status_code == 404
        assert (await api.client.post(f"/ui/servers/{sid}/bounces/{missing}/activate",
                                      data={"csrf_token": csrf})).status_code == 404
