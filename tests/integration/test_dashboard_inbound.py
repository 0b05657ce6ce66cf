"""The dashboard's inbound mail pages over HTTP (httpx over ASGI, the real runtime, both databases) with mail
arriving for real: swaks sends to the inbound SMTP listener, a webhook receiver on loopback is the InboundHookUrl
(the fixtures of test_inbound.py). The list finds as `GET /messages/inbound` does; a message's page shows its
parsed fields and its posts with each attempt; bypass and retry act as `PUT …/bypass` and `…/retry` do
(docs/postmark-api.md §4.6), and say so on the page when the message's status does not allow them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from integration.dashboard_pages import element, operator, server_id, text_of
from integration.test_inbound import Inbound, api_settings, dns, inbound, message
from support import async_wait_for

__all__ = ["api_settings", "dns", "inbound"]  # the fixtures, shared with test_inbound.py


def listed(page: str) -> list[tuple[str, str, str, str]]:
    """(status, from, subject, mailbox hash) of each row of the list."""
    rows = re.findall(r'<tr>\s*<td><span class="status[^"]*">(.*?)</span></td>\s*<td class="recipients">(.*?)</td>'
                      r'\s*<td class="subject"><a [^>]*>(.*?)</a></td>\s*<td>(.*?)</td>', page, re.S)
    return [(text_of(s), text_of(f), text_of(t), text_of(h)) for s, f, t, h in rows]


def message_link(page: str, subject: str) -> str:
    found = re.search(rf'<a href="(/ui/servers/\d+/inbound/[^"]+)">{re.escape(subject)}</a>', page)
    assert found, subject
    return found.group(1)


async def page_status(api: Any, url: str, status: str) -> bool:
    return element((await api.client.get(url)).text, "inbound-status") == status


async def test_inbound_mail_its_posts_bypass_and_retry(inbound: Inbound, tmp_path: Path) -> None:
    api = inbound.api
    csrf = await operator(api)
    sid = await server_id(api)
    base = f"/ui/servers/{sid}/streams/inbound/inbound"
    created = await api.client.post("/triggers/inboundrules", json={"Rule": "spammer.example"},
                                    headers=api.server_headers)
    assert created.status_code == 200, created.text
    to = await inbound.address("order-1234")
    for sender, subject in (("ann@sender.example", "Re: your order"), ("x@spammer.example", "Cheap pills")):
        code, out = await inbound.swaks("--from", sender, "--to", to, tmp=tmp_path, data=message(
            to, subject=subject, sender=sender, body="Thanks, it arrived.\r\n\r\n> quoted earlier mail\r\n"))
        assert code == 0, out
    await inbound.posts(1)

    # The list: status, from, subject, mailbox hash; the path of another stream leads here.
    assert (await api.client.get(f"/ui/servers/{sid}/streams/outbound/inbound?status=blocked")).headers["location"] \
        == f"{base}?status=blocked"
    page = await api.client.get(base)
    assert page.status_code == 200, page.text
    assert sorted(listed(page.text)) == [("Blocked", "x@spammer.example", "Cheap pills", "order-1234"),
                                         ("Processed", "ann@sender.example", "Re: your order", "order-1234")]
    assert [r[2] for r in listed((await api.client.get(base, params={"status": "blocked"})).text)] == ["Cheap pills"]
    assert [r[2] for r in listed((await api.client.get(base, params={"from": "ann@sender.example"})).text)] == \
        ["Re: your order"]
    assert len(listed((await api.client.get(base, params={"mailboxhash": "order-1234"})).text)) == 2
    assert "No inbound message matches." in text_of((await api.client.get(base, params={"subject": "zzz"})).text)
    bad = await api.client.get(base, params={"status": "lost"})
    assert bad.status_code == 400 and "Invalid status: 'lost'." in text_of(bad.text)

    # A processed message: its fields and its post, delivered on the first attempt with the hook's 200.
    processed = message_link(page.text, "Re: your order")
    main = element((await api.client.get(processed)).text, "main")
    assert "ann@sender.example" in main and to in main and "order-1234" in main
    assert "Thanks, it arrived." in element((await api.client.get(processed)).text, "inbound-text")
    assert "Inbound post: delivered" in main and "HTTP 200" in main and inbound.receiver.url.split("//")[1] in main
    assert "Bypass" not in main and "Retry posting" not in main
    refused = await api.client.post(processed + "/bypass", data={"csrf_token": csrf})
    assert refused.status_code == 400
    assert element(refused.text, "action-error") == \
        "Only a blocked message can bypass its rules; this one is processed."
    assert (await api.client.post(processed + "/retry", data={"csrf_token": csrf})).status_code == 400

    # A blocked one: why, no post; bypassing posts it.
    blocked = message_link(page.text, "Cheap pills")
    main = element((await api.client.get(blocked)).text, "main")
    assert "Blocked by the inbound rule 'spammer.example'." in main and "Not posted: it was blocked." in main
    done = await api.client.post(blocked + "/bypass", data={"csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"] == blocked + "?done=bypassed"
    assert "bypassed its rules" in element((await api.client.get(done.headers["location"])).text, "main")
    posts = await inbound.posts(2)
    assert posts[1].json["Subject"] == "Cheap pills"
    await async_wait_for(lambda: page_status(api, blocked, "Processed"), timeout=10)

    # A failed one (the hook answered 500 until the schedule ran out): its attempts, then a retry by hand.
    inbound.receiver.script[:] = [500, 500, 500]
    code, out = await inbound.swaks("--from", "bo@sender.example", "--to", to, tmp=tmp_path,
                                    data=message(to, subject="Third try", sender="bo@sender.example"))
    assert code == 0, out
    failing = message_link((await api.client.get(base, params={"subject": "Third try"})).text, "Third try")
    await async_wait_for(lambda: page_status(api, failing, "Failed"), timeout=20)
    shown = (await api.client.get(failing)).text
    main = element(shown, "main")
    assert "Inbound post: failed" in main and "Retry posting it" in main
    [attempts] = re.findall(r'<ul class="attempts">(.*?)</ul>', shown, re.S)
    assert [text_of(a).split(": ", 1)[1] for a in re.findall(r"<li>(.*?)</li>", attempts, re.S)] == \
        ["retry, HTTP 500, the webhook receiver answered HTTP 500"] * 3  # each attempt's outcome as the poster saw it
    retried = await api.client.post(failing + "/retry", data={"csrf_token": csrf})
    assert retried.status_code == 303 and retried.headers["location"] == failing + "?done=retried"
    await async_wait_for(lambda: page_status(api, failing, "Processed"), timeout=10)
    assert inbound.receiver.requests[-1].json["Subject"] == "Third try"
    assert "HTTP 200" in element((await api.client.get(failing)).text, "main")

    assert (await api.client.get(f"/ui/servers/{sid}/inbound/no-such-message")).status_code == 404
    assert (await api.client.post(f"/ui/servers/{sid}/inbound/no-such-message/retry",
                                  data={"csrf_token": csrf})).status_code == 404
