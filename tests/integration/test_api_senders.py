"""/senders through the real ASGI app on both databases: the signatures, their confirmation by a mailed link
(sent through Posthouse's own pipeline), and the `sender_policy` setting on the API and over SMTP
(docs/postmark-api.md §8.4; Postmark's ErrorCode 400)."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from integration.dns_zone import ZoneServer
from posthouse.server.smtp.server import Listener
from support import assert_api_error

OPERATOR = "postmaster@posthouse-mail.net"
PUBLIC_URL = "https://mail.posthouse-mail.net/api"
SIGNATURE_KEYS = {"ID", "Domain", "EmailAddress", "ReplyToEmailAddress", "Name", "Confirmed"}
DETAIL_KEYS = SIGNATURE_KEYS | {
    "ConfirmationPersonalNote", "SPFVerified", "SPFHost", "SPFTextValue", "DKIMVerified", "WeakDKIM", "DKIMHost",
    "DKIMTextValue", "DKIMPendingHost", "DKIMPendingTextValue", "DKIMRevokedHost", "DKIMRevokedTextValue",
    "SafeToRemoveRevokedKeyFromDNS", "DKIMUpdateStatus", "ReturnPathDomain", "ReturnPathDomainVerified",
    "ReturnPathDomainCNAMEValue", "DKIMRecords",
}
MESSAGE = {"To": "reader@example.net", "Subject": "Hi", "TextBody": "Hello"}


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with ZoneServer() as server:
        yield server


@pytest.fixture
def api_settings(zone: ZoneServer, request: pytest.FixtureRequest) -> dict[str, str]:
    return {"dns_nameservers": zone.nameserver, "return_path": "pm_bounces@bounces.posthouse-mail.net",
            "sender_confirmation_from": f"Posthouse <{OPERATOR}>", "api_base_url": PUBLIC_URL + "/",
            **getattr(request, "param", {})}


VERIFIED = pytest.mark.parametrize("api_settings", [{"sender_policy": "verified"}], indirect=True)


async def create(api: Any, **body: object) -> Any:
    return await api.client.post("/senders", json=body, headers=api.account_headers)


async def created(api: Any, email: str, name: str = "Jane Doe", **body: object) -> dict[str, Any]:
    answer = await create(api, FromEmail=email, Name=name, **body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def call(api: Any, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    answer = await api.client.request(method, path, headers=api.account_headers, **kwargs)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def confirmation_links(api: Any, email: str) -> list[str]:
    """The confirmation links mailed to `email`, oldest first, read from the messages Posthouse stored."""
    found = await api.client.get("/messages/outbound", headers=api.server_headers,
                                 params={"count": 50, "offset": 0, "recipient": email, "tag": "sender-confirmation"})
    assert found.status_code == 200, found.text
    links = []
    for message in reversed(found.json()["Messages"]):
        assert message["From"] == f'"Posthouse" <{OPERATOR}>' and message["TrackLinks"] == "None"
        details = await api.client.get(f"/messages/outbound/{message['MessageID']}/details", headers=api.server_headers)
        links += re.findall(r"https://\S+", details.json()["TextBody"])
    return links


def path_of(link: str) -> str:
    assert link.startswith(PUBLIC_URL + "/senders/confirm/"), link
    return link.removeprefix(PUBLIC_URL)


async def send(api: Any, sender: str, headers: dict[str, str] | None = None) -> Any:
    return await api.client.post("/email", json={**MESSAGE, "From": sender}, headers=headers or api.server_headers)


# -- signatures ---------------------------------------------------------------------------------------


async def test_a_signature_is_created_unconfirmed_with_its_domains_records(api: Any) -> None:
    details = await created(api, "Jane@Example.com", ReplyToEmail="help@example.com",
                            ConfirmationPersonalNote="For the invoices.")
    assert set(details) == DETAIL_KEYS
    assert (details["EmailAddress"], details["Domain"], details["Name"]) == ("Jane@example.com", "example.com",
                                                                            "Jane Doe")
    assert (details["Confirmed"], details["ReplyToEmailAddress"]) == (False, "help@example.com")
    assert details["ConfirmationPersonalNote"] == "For the invoices."
    # The signature's DKIM is its domain's, which the account now has (made with the signature).
    [domain] = (await call(api, "GET", "/domains"))["Domains"]
    assert domain["Name"] == "example.com"
    domain_details = await call(api, "GET", f"/domains/{domain['ID']}")
    assert details["DKIMPendingHost"] == domain_details["DKIMPendingHost"] != ""
    assert details["DKIMPendingTextValue"] == domain_details["DKIMPendingTextValue"]
    second = await created(api, "billing@example.com", ReturnPathDomain="pm-bounces.example.com")
    assert second["DKIMPendingHost"] == details["DKIMPendingHost"]  # one domain, one key
    assert second["ReturnPathDomain"] == "pm-bounces.example.com"
    assert (await call(api, "GET", "/domains"))["TotalCount"] == 1
    page = await call(api, "GET", "/senders?count=1&offset=1")
    assert page["TotalCount"] == 2 and [s["EmailAddress"] for s in page["SenderSignatures"]] == ["billing@example.com"]
    assert set(page["SenderSignatures"][0]) == SIGNATURE_KEYS
    again = await call(api, "GET", f"/senders/{details['ID']}")
    assert again == {**details, "ReturnPathDomain": "pm-bounces.example.com"}


async def test_bad_signatures_get_postmarks_error_codes(api: Any) -> None:
    assert_api_error(await create(api, Name="No Address"), 520, text="FromEmail")
    assert_api_error(await create(api, FromEmail="jo@example.com"), 520, text="Name")
    assert_api_error(await create(api, FromEmail="not an address", Name="X"), 522)
    assert_api_error(await create(api, FromEmail="jo@example.com", Name="X", ReplyToEmail="nope"), 522)
    assert_api_error(await create(api, FromEmail="someone@gmail.com", Name="X"), 503)
    assert_api_error(await create(api, FromEmail="jo@example.com", Name="X", ConfirmationPersonalNote="n" * 401), 521)
    assert_api_error(await create(api, FromEmail="jo@example.com", Name="X", ConfirmationPersonalNote="   "), 522)
    assert_api_error(await create(api, FromEmail="jo@example.com", Name="X", ReturnPathDomain="x.example.org"), 522)
    assert_api_error(await create(api, FromEmail="jo@example.com", Name="x" * 256), 521)
    assert_api_error(await create(api, FromEmail="jo@example.com", Name="Jo\r\nBcc: x@example.org"), 522)
    # A NUL in any JSON field is refused where every body is read (api/payloads.py), as Postmark's 403.
    assert_api_error(await create(api, FromEmail="jo@example.com", Name="Jo\x00"), 403)
    assert_api_error(await create(api, FromEmail="jo@example.com", Name="Jo", ConfirmationPersonalNote="a\x00b"), 403)
    assert_api_error(await create(api, FromEmail="jo\x00@example.com", Name="Jo"), 403)
    assert_api_error(await create(api, FromEmail="jo@example.com", Name="Jo", ReturnPathDomain="a\x00.example.com"),
                     403)
    await created(api, "jo@example.com")
    assert_api_error(await create(api, FromEmail="JO@EXAMPLE.COM", Name="Again"), 504)
    assert_api_error(await api.client.post("/senders", content=b" ", headers=api.account_headers), 520)
    for method in ("GET", "DELETE"):
        assert_api_error(await api.client.request(method, "/senders/999", headers=api.account_headers), 501, 404)
    assert_api_error(await api.client.get("/senders", headers=api.server_headers), 10, 401)


async def test_a_signature_is_edited_and_deleted(api: Any, zone: ZoneServer) -> None:
    details = await created(api, "edit@example.com")
    path = f"/senders/{details['ID']}"
    edited = await call(api, "PUT", path, json={"Name": "Updated name", "ReplyToEmail": None,
                                                "ReturnPathDomain": "pm-bounces.example.com"})
    assert (edited["Name"], edited["ReplyToEmailAddress"], edited["ReturnPathDomain"]) == \
        ("Updated name", "", "pm-bounces.example.com")
    edited = await call(api, "PUT", path, json={"Name": "Updated name", "ReplyToEmail": "reply@example.com"})
    assert edited["ReplyToEmailAddress"] == "reply@example.com"
    assert_api_error(await api.client.put(path, json={}, headers=api.account_headers), 502)
    assert_api_error(await api.client.put(path, json={"Name": ""}, headers=api.account_headers), 520)
    removed = await api.client.delete(path, headers=api.account_headers)
    assert removed.json() == {"ErrorCode": 0, "Message": "Signature edit@example.com removed."}
    assert (await call(api, "GET", "/senders"))["TotalCount"] == 0
    assert (await call(api, "GET", "/domains"))["TotalCount"] == 1  # the domain stays


async def test_deprecated_spf_and_dkim_calls_act_on_the_signatures_domain(api: Any, zone: ZoneServer) -> None:
    details = await created(api, "old@example.com")
    zone.txt("example.com", "v=spf1 include:bounces.posthouse-mail.net ~all")
    assert (await call(api, "POST", f"/senders/{details['ID']}/verifySpf"))["SPFVerified"] is True
    # requestnewdkim is a rotation: refused while the first key waits, a new pending key once it is verified.
    assert_api_error(await api.client.post(f"/senders/{details['ID']}/requestnewdkim", headers=api.account_headers),
                     505)
    zone.txt(details["DKIMPendingHost"], details["DKIMPendingTextValue"])
    [domain] = (await call(api, "GET", "/domains"))["Domains"]
    await call(api, "PUT", f"/domains/{domain['ID']}/verifyDkim")
    renewed = await call(api, "POST", f"/senders/{details['ID']}/requestNewDkim")
    assert renewed["DKIMHost"] == details["DKIMPendingHost"]
    assert renewed["DKIMPendingHost"] not in ("", details["DKIMPendingHost"])
    # A signature whose domain was removed shows no DNS records; renewing gives its domain back.
    await call(api, "DELETE", f"/domains/{domain['ID']}")
    bare = await call(api, "GET", f"/senders/{details['ID']}")
    assert (bare["DKIMHost"], bare["DKIMPendingHost"], bare["DKIMRecords"]) == ("", "", [])
    again = await call(api, "POST", f"/senders/{details['ID']}/requestnewdkim")
    assert again["DKIMPendingHost"] != ""


# -- confirmation ------------------------------------------------------------------------------------


async def test_the_mailed_link_confirms_the_signature_once(api: Any) -> None:
    details = await created(api, "confirm@example.com", name="Con Firm")
    [link] = await confirmation_links(api, "confirm@example.com")
    page = await api.client.get(path_of(link))  # no token: the link is all a recipient has
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "confirm@example.com" in page.text and 'method="post"' in page.text
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    # Fetching the link (a mail scanner does) confirms nothing.
    assert (await call(api, "GET", f"/senders/{details['ID']}"))["Confirmed"] is False
    done = await api.client.post(path_of(link))
    assert done.status_code == 200 and "is confirmed" in done.text
    assert (await call(api, "GET", f"/senders/{details['ID']}"))["Confirmed"] is True
    assert (await api.client.post(path_of(link))).status_code == 404  # used up
    assert (await api.client.get(path_of(link))).status_code == 404
    assert_api_error(await api.client.post(f"/senders/{details['ID']}/resend", headers=api.account_headers), 506)


async def test_a_resent_link_replaces_the_first(api: Any) -> None:
    details = await created(api, "again@example.com", ConfirmationPersonalNote="From the billing team.")
    resent = await call(api, "POST", f"/senders/{details['ID']}/resend")
    assert resent == {"ErrorCode": 0,
                      "Message": "Confirmation email for Sender Signature again@example.com was re-sent."}
    first, second = await confirmation_links(api, "again@example.com")
    assert first != second
    assert (await api.client.post(path_of(first))).status_code == 404
    assert (await api.client.post(path_of("https://mail.posthouse-mail.net/api/senders/confirm/made-up"))
            ).status_code == 404
    assert (await api.client.post(path_of(second))).status_code == 200
    assert (await call(api, "GET", f"/senders/{details['ID']}"))["Confirmed"] is True


@pytest.mark.parametrize("api_settings", [{"sender_confirmation_from": "postmaster@localhost"}], indirect=True)
async def test_a_confirmation_that_cannot_be_sent_says_why(api: Any) -> None:
    details = await created(api, "unsent@example.com")  # the signature is made; the mail waits for a resend
    assert await confirmation_links(api, "unsent@example.com") == []
    assert_api_error(await api.client.post(f"/senders/{details['ID']}/resend", headers=api.account_headers), 300,
                     text="The confirmation email cannot be sent")


# -- the sender policy -------------------------------------------------------------------------------


async def test_by_default_any_from_address_may_send(api: Any) -> None:
    assert (await send(api, "anyone@example.org")).status_code == 200


@VERIFIED
async def test_verified_policy_refuses_unknown_senders_with_postmarks_400(api: Any, zone: ZoneServer) -> None:
    refused = await send(api, "Someone <someone@example.org>")
    assert_api_error(refused, 400, text="The 'From' address you supplied (Someone <someone@example.org>) is not a "
                                        "Sender Signature on your account.")
    assert await api.count("messages") == 0
    # A signature not confirmed yet: 401; once confirmed the address sends, its domain's others still do not.
    await created(api, "someone@example.org")
    assert_api_error(await send(api, "someone@example.org"), 401, text="not confirmed")
    [link] = await confirmation_links(api, "someone@example.org")  # the operator's own mail was let through
    assert (await api.client.post(path_of(link))).status_code == 200
    assert (await send(api, "SOMEONE@example.org")).status_code == 200
    assert_api_error(await send(api, "other@example.org"), 400)
    # A domain whose DKIM is verified: every address on it, not its subdomains.
    domain = await call(api, "POST", "/domains", json={"Name": "verified.example.net"})
    zone.txt(domain["DKIMPendingHost"], domain["DKIMPendingTextValue"])
    assert_api_error(await send(api, "news@verified.example.net"), 400)
    await call(api, "PUT", f"/domains/{domain['ID']}/verifyDkim")
    assert (await send(api, "news@verified.example.net")).status_code == 200
    assert_api_error(await send(api, "news@sub.verified.example.net"), 400)
    # Batches answer per message; the test token is not told which senders exist.
    batch = await api.client.post("/email/batch", headers=api.server_headers, json=[
        {**MESSAGE, "From": "news@verified.example.net"}, {**MESSAGE, "From": "nobody@example.org"}])
    assert [item["ErrorCode"] for item in batch.json()] == [0, 400]
    test = await send(api, "nobody@example.org", {"X-Postmark-Server-Token": "POSTMARK_API_TEST"})
    assert test.status_code == 200


@pytest.fixture
async def smtp_port(api: Any) -> AsyncIterator[int]:
    server = api.runtime.smtp_server()
    ((_, port),) = await server.start([Listener("127.0.0.1", 0)])
    try:
        yield port
    finally:
        await server.stop(grace=2)


def submit(port: int, token: str, sender: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.login(token, token)
        client.mail(sender)
        client.rcpt("reader@example.net")
        return client.data(f"From: {sender}\r\nTo: reader@example.net\r\nSubject: Hi\r\n\r\nHello\r\n".encode())


@VERIFIED
async def test_verified_policy_refuses_unknown_senders_over_smtp_with_554_5_7_1(api: Any, smtp_port: int) -> None:
    code, text = await asyncio.to_thread(submit, smtp_port, api.server_token, "someone@example.org")
    assert code == 554 and text.startswith(b"5.7.1 The 'From' address you supplied (someone@example.org) is not"), text
    assert text.endswith(b"(ErrorCode 400)")
    await created(api, "someone@example.org")
    [link] = await confirmation_links(api, "someone@example.org")
    await api.client.post(path_of(link))
    code, text = await asyncio.to_thread(submit, smtp_port, api.server_token, "someone@example.org")
    assert code == 250, text
