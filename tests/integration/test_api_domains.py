"""/domains through the real ASGI app on both databases, verified against a real DNS server on loopback
(dnslib): create, list, edit, delete, DKIM verification and rotation, Return-Path and SPF checks
(docs/postmark-api.md §8.4), and the signing keys the delivery worker gets from them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from integration.dns_zone import ZoneServer
from posthouse.server.domain.dkim_keys import DkimAlgorithm
from posthouse.server.store.sql import Stmt
from support import assert_api_error

BOUNCE_DOMAIN = "bounces.posthouse-mail.net"  # our return-path domain in these tests
SUMMARY_KEYS = {"ID", "Name", "SPFVerified", "DKIMVerified", "WeakDKIM", "ReturnPathDomainVerified"}
DETAIL_KEYS = {
    "ID", "Name", "SPFVerified", "SPFHost", "SPFTextValue", "DKIMVerified", "WeakDKIM", "DKIMHost", "DKIMTextValue",
    "DKIMPendingHost", "DKIMPendingTextValue", "DKIMRevokedHost", "DKIMRevokedTextValue",
    "SafeToRemoveRevokedKeyFromDNS", "DKIMUpdateStatus", "ReturnPathDomain", "ReturnPathDomainVerified",
    "ReturnPathDomainCNAMEValue", "DKIMRecords",
}


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with ZoneServer() as server:
        yield server


@pytest.fixture
def api_settings(zone: ZoneServer, request: pytest.FixtureRequest) -> dict[str, str]:
    return {"dns_nameservers": zone.nameserver, "dns_timeout": "3s", "return_path": f"pm_bounces@{BOUNCE_DOMAIN}",
            **getattr(request, "param", {})}


async def create(api: Any, **body: object) -> Any:
    return await api.client.post("/domains", json=body, headers=api.account_headers)


async def created(api: Any, name: str, **body: object) -> dict[str, Any]:
    answer = await create(api, Name=name, **body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def action(api: Any, method: str, path: str) -> dict[str, Any]:
    answer = await api.client.request(method, path, headers=api.account_headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def publish_pending(zone: ZoneServer, details: dict[str, Any]) -> None:
    """What a domain owner does with the create answer: every pending record into DNS."""
    for record in details["DKIMRecords"]:
        if record["State"] == "Pending":
            zone.txt(record["Host"], record["TextValue"])


def public_key(text_value: str) -> Any:
    tags = dict(part.strip().split("=", 1) for part in text_value.split(";"))
    raw = base64.b64decode(tags["p"])
    if tags["k"] == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    return serialization.load_der_public_key(raw)


def signs_for(key_pem: bytes, text_value: str) -> bool:
    """Whether a private key (as the worker gets it) makes signatures the published record verifies."""
    private = serialization.load_pem_private_key(key_pem, password=None)
    public = public_key(text_value)
    try:
        if isinstance(private, rsa.RSAPrivateKey):
            public.verify(private.sign(b"data", padding.PKCS1v15(), hashes.SHA256()), b"data", padding.PKCS1v15(),
                          hashes.SHA256())
        else:
            assert isinstance(private, ed25519.Ed25519PrivateKey)
            public.verify(private.sign(b"data"), b"data")
    except Exception:
        return False
    return True


# -- creating, reading, listing ------------------------------------------------------------------------


async def test_a_new_domain_has_a_pending_rsa_key_and_the_records_to_publish(api: Any) -> None:
    details = await created(api, "Mail.Example.COM.", ReturnPathDomain="pm-bounces.mail.example.com")
    assert set(details) == DETAIL_KEYS
    assert details["Name"] == "mail.example.com"  # one spelling: lower case, no root dot
    selector = details["DKIMPendingHost"].removesuffix("._domainkey.mail.example.com")
    assert selector.endswith("ph") and selector[:-2].isdigit() and len(selector) == 16  # 20260514093012ph
    assert details["DKIMPendingTextValue"].startswith("v=DKIM1; k=rsa; p=")
    key = public_key(details["DKIMPendingTextValue"])
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    assert (details["DKIMHost"], details["DKIMTextValue"], details["DKIMRevokedHost"]) == ("", "", "")
    assert (details["DKIMVerified"], details["WeakDKIM"], details["DKIMUpdateStatus"]) == (False, False, "Pending")
    assert details["ReturnPathDomain"] == "pm-bounces.mail.example.com"
    assert (details["ReturnPathDomainVerified"], details["ReturnPathDomainCNAMEValue"]) == (False, BOUNCE_DOMAIN)
    assert (details["SPFHost"], details["SPFVerified"]) == ("mail.example.com", False)
    assert details["SPFTextValue"] == f"v=spf1 a mx include:{BOUNCE_DOMAIN} ~all"
    assert details["SafeToRemoveRevokedKeyFromDNS"] is False
    assert details["DKIMRecords"] == [{"Host": details["DKIMPendingHost"], "TextValue": details["DKIMPendingTextValue"],
                                       "Algorithm": "rsa-sha256", "State": "Pending"}]
    again = await action(api, "GET", f"/domains/{details['ID']}")
    assert again == details


@pytest.mark.parametrize("api_settings", [{"dkim_keys": "both"}], indirect=True)
async def test_with_both_key_types_a_domain_publishes_an_rsa_and_an_ed25519_key(api: Any) -> None:
    details = await created(api, "both.example.com")
    records = details["DKIMRecords"]
    assert [(r["Algorithm"], r["State"]) for r in records] == [("rsa-sha256", "Pending"), ("ed25519-sha256", "Pending")]
    assert records[1]["Host"] == records[0]["Host"].replace("ph._domainkey", "phe._domainkey")
    assert isinstance(public_key(records[1]["TextValue"]), ed25519.Ed25519PublicKey)
    assert details["DKIMPendingHost"] == records[0]["Host"]  # Postmark's one-key fields show the RSA key


async def test_domains_are_listed_in_pages_with_the_summary_fields(api: Any) -> None:
    for name in ("a.example.com", "b.example.com", "c.example.com"):
        await created(api, name)
    page = await action(api, "GET", "/domains?count=2&offset=1")
    assert page["TotalCount"] == 3
    assert [d["Name"] for d in page["Domains"]] == ["b.example.com", "c.example.com"]
    assert all(set(d) == SUMMARY_KEYS for d in page["Domains"])
    assert (await action(api, "GET", "/domains"))["TotalCount"] == 3  # count and offset default (100, 0)
    for query, code in (("count=0&offset=0", 500), ("count=501&offset=0", 500), ("count=1&offset=-1", 500),
                        ("count=x", 500)):
        assert_api_error(await api.client.get(f"/domains?{query}", headers=api.account_headers), code)


async def test_bad_domains_get_postmarks_error_codes(api: Any) -> None:
    assert_api_error(await create(api), 514)
    assert_api_error(await create(api, Name="   "), 514)
    assert_api_error(await create(api, Name=("x" * 63 + ".") * 4 + "com"), 515)
    for name in ("localhost", "not a domain", "-bad-.example.com", "example.123", "a..example.com",
                 "x" * 64 + ".example.com", "a%_.example.com"):
        assert_api_error(await create(api, Name=name), 516, text=name)
    # A NUL is refused before any field's own rule, the same 403 as in every other body (docs/postmark-api.md, the 403 row).
    assert_api_error(await create(api, Name="nul\x00.example.com"), 403, text="NUL")
    await created(api, "taken.example.com")
    assert_api_error(await create(api, Name="TAKEN.example.com"), 512)
    for return_path in ("elsewhere.example.org", "taken.example.com", "x.taken.example.com.evil.org"):
        assert_api_error(await create(api, Name="other.example.com", ReturnPathDomain=return_path), 511)
    empty = await api.client.post("/domains", content=b"", headers=api.account_headers)
    assert_api_error(empty, 514)
    assert_api_error(await api.client.get("/domains/999", headers=api.account_headers), 510, 404)
    assert_api_error(await api.client.get("/domains/abc", headers=api.account_headers), 510, 404)
    # The account token alone opens /domains.
    assert_api_error(await api.client.get("/domains", headers=api.server_headers), 10, 401)


async def test_editing_the_return_path_resets_its_verification_and_delete_removes_the_domain(
        api: Any, zone: ZoneServer) -> None:
    details = await created(api, "edit.example.com", ReturnPathDomain="pm-bounces.edit.example.com")
    zone.cname("pm-bounces.edit.example.com", BOUNCE_DOMAIN)
    assert (await action(api, "PUT", f"/domains/{details['ID']}/verifyReturnPath"))["ReturnPathDomainVerified"]
    path = f"/domains/{details['ID']}"
    edited = await api.client.put(path, json={"ReturnPathDomain": "return.edit.example.com"},
                                  headers=api.account_headers)
    assert edited.status_code == 200, edited.text
    assert (edited.json()["ReturnPathDomain"], edited.json()["ReturnPathDomainVerified"]) == \
        ("return.edit.example.com", False)
    assert_api_error(await api.client.put(path, json={"ReturnPathDomain": "nope.example.org"},
                                          headers=api.account_headers), 511)
    assert_api_error(await api.client.put(path, json={}, headers=api.account_headers), 511)
    removed = await api.client.delete(path, headers=api.account_headers)
    assert removed.json() == {"ErrorCode": 0, "Message": "Domain edit.example.com removed."}
    assert_api_error(await api.client.get(path, headers=api.account_headers), 510, 404)
    assert await api.count("dkim_keys") == 0
    assert_api_error(await api.client.delete(path, headers=api.account_headers), 510, 404)


# -- DKIM: verification, signing keys, rotation ---------------------------------------------------------


async def test_verify_dkim_activates_the_pending_key_only_once_dns_holds_it(api: Any, zone: ZoneServer) -> None:
    details = await created(api, "dkim.example.com")
    verify = f"/domains/{details['ID']}/verifyDkim"
    keys = api.runtime.signing_keys
    assert await keys.for_domain("dkim.example.com") == ()  # pending keys sign nothing

    unchanged = await action(api, "PUT", verify)  # nothing published: 200, nothing changes
    assert (unchanged["DKIMVerified"], unchanged["DKIMPendingHost"]) == (False, details["DKIMPendingHost"])
    assert (details["DKIMPendingHost"].lower(), "TXT") in zone.queries

    other = await created(api, "other.example.com")  # another key's record at this name is not this key
    zone.txt(details["DKIMPendingHost"], other["DKIMPendingTextValue"], "v=spf1 -all")
    assert (await action(api, "PUT", verify))["DKIMVerified"] is False

    zone.remove(details["DKIMPendingHost"])
    # Published the way DNS consoles often do it: no v= tag, split strings, spaces folded into the key.
    p = details["DKIMPendingTextValue"].split("p=", 1)[1]
    zone.txt(details["DKIMPendingHost"], f"k=rsa;  p={p[:100]} {p[100:]}")
    verified = await action(api, "PUT", verify)
    assert (verified["DKIMVerified"], verified["DKIMUpdateStatus"]) == (True, "Verified")
    assert (verified["DKIMHost"], verified["DKIMTextValue"]) == \
        (details["DKIMPendingHost"], details["DKIMPendingTextValue"])
    assert (verified["DKIMPendingHost"], verified["DKIMPendingTextValue"]) == ("", "")
    [signing] = await keys.for_domain("DKIM.example.com.")  # asked as a From domain may spell it
    assert (signing.domain, signing.algorithm) == ("dkim.example.com", DkimAlgorithm.RSA_SHA256)
    assert signing.dns_name == details["DKIMPendingHost"]
    assert signs_for(signing.private_key_pem, details["DKIMPendingTextValue"])
    # Once verified, always: removing the record later does not un-verify it (Postmark's DKIMVerified).
    zone.remove(details["DKIMPendingHost"])
    assert (await action(api, "PUT", verify))["DKIMVerified"] is True
    assert await keys.for_domain("nothing-here.example.com") == ()


async def test_rotation_keeps_the_old_key_signing_until_the_new_one_is_verified(api: Any, zone: ZoneServer) -> None:
    first = await created(api, "rotate.example.com")
    domain = f"/domains/{first['ID']}"
    keys = api.runtime.signing_keys
    assert_api_error(await api.client.post(f"{domain}/rotatedkim", headers=api.account_headers), 505)  # still pending
    publish_pending(zone, first)
    await action(api, "PUT", f"{domain}/verifyDkim")

    rotated = await action(api, "POST", f"{domain}/rotateDKIM")  # postmark.js's spelling
    assert rotated["DKIMUpdateStatus"] == "Pending"
    assert rotated["DKIMHost"] == first["DKIMPendingHost"]
    assert rotated["DKIMPendingHost"] not in ("", first["DKIMPendingHost"])
    assert [r["State"] for r in rotated["DKIMRecords"]] == ["Active", "Pending"]
    [signing] = await keys.for_domain("rotate.example.com")
    assert signing.dns_name == first["DKIMPendingHost"]  # the old key signs while the new one waits
    assert_api_error(await api.client.post(f"{domain}/rotatedkim", headers=api.account_headers), 505,
                     text="DKIM already scheduled for renewal")

    publish_pending(zone, rotated)
    swapped = await action(api, "PUT", f"{domain}/verifyDkim")
    assert (swapped["DKIMHost"], swapped["DKIMUpdateStatus"]) == (rotated["DKIMPendingHost"], "Verified")
    assert (swapped["DKIMRevokedHost"], swapped["DKIMRevokedTextValue"]) == \
        (first["DKIMPendingHost"], first["DKIMPendingTextValue"])
    assert swapped["SafeToRemoveRevokedKeyFromDNS"] is False  # mail signed with it may still be verified
    [signing] = await keys.for_domain("rotate.example.com")
    assert signing.dns_name == rotated["DKIMPendingHost"]  # the cache saw the change at once
    assert signs_for(signing.private_key_pem, rotated["DKIMPendingTextValue"])

    micros_73h = 73 * 3600 * 1_000_000
    await api.runtime.store.transact([Stmt(
        "UPDATE dkim_keys SET revoked_at = revoked_at - ? WHERE state = 'revoked'", (micros_73h,))])
    assert (await action(api, "GET", domain))["SafeToRemoveRevokedKeyFromDNS"] is True

    third = await action(api, "POST", f"{domain}/rotatedkim")
    publish_pending(zone, third)
    latest = await action(api, "PUT", f"{domain}/verifyDkim")
    assert [r["State"] for r in latest["DKIMRecords"]] == ["Revoked", "Active"]  # the first key is forgotten
    assert latest["DKIMRevokedHost"] == rotated["DKIMPendingHost"]
    assert latest["SafeToRemoveRevokedKeyFromDNS"] is False


@pytest.mark.parametrize("api_settings", [{"dkim_keys": "both"}], indirect=True)
async def test_both_keys_must_be_published_and_then_both_sign(api: Any, zone: ZoneServer) -> None:
    details = await created(api, "pair.example.com")
    rsa_record, ed_record = details["DKIMRecords"]
    zone.txt(rsa_record["Host"], rsa_record["TextValue"])
    assert (await action(api, "PUT", f"/domains/{details['ID']}/verifyDkim"))["DKIMVerified"] is False
    zone.txt(ed_record["Host"], ed_record["TextValue"])
    assert (await action(api, "PUT", f"/domains/{details['ID']}/verifyDkim"))["DKIMVerified"] is True
    signing = await api.runtime.signing_keys.for_domain("pair.example.com")
    assert [k.algorithm for k in signing] == [DkimAlgorithm.RSA_SHA256, DkimAlgorithm.ED25519_SHA256]
    assert signs_for(signing[1].private_key_pem, ed_record["TextValue"])


async def test_a_dns_failure_changes_nothing(api: Any, zone: ZoneServer) -> None:
    details = await created(api, "flaky.example.com", ReturnPathDomain="pm-bounces.flaky.example.com")
    zone.cname("pm-bounces.flaky.example.com", BOUNCE_DOMAIN)
    assert (await action(api, "PUT", f"/domains/{details['ID']}/verifyReturnPath"))["ReturnPathDomainVerified"]
    publish_pending(zone, details)
    zone.failing.update({"pm-bounces.flaky.example.com", details["DKIMPendingHost"].lower()})
    # SERVFAIL is no answer: the Return-Path stays verified and the pending key pending, both answered 200.
    assert (await action(api, "PUT", f"/domains/{details['ID']}/verifyReturnPath"))["ReturnPathDomainVerified"]
    assert (await action(api, "PUT", f"/domains/{details['ID']}/verifyDkim"))["DKIMVerified"] is False


# -- Return-Path and SPF ------------------------------------------------------------------------------


async def test_verify_return_path_checks_the_cname_target(api: Any, zone: ZoneServer) -> None:
    details = await created(api, "rp.example.com", ReturnPathDomain="pm-bounces.rp.example.com")
    verify = f"/domains/{details['ID']}/verifyReturnPath"
    assert (await action(api, "PUT", verify))["ReturnPathDomainVerified"] is False  # NXDOMAIN
    zone.cname("pm-bounces.rp.example.com", "pm.mtasv.net")  # pointed at Postmark, not here
    assert (await action(api, "PUT", verify))["ReturnPathDomainVerified"] is False
    zone.remove("pm-bounces.rp.example.com")
    zone.cname("pm-bounces.rp.example.com", BOUNCE_DOMAIN.upper())
    answer = await action(api, "PUT", verify)
    assert (answer["ReturnPathDomainVerified"], answer["ID"]) == (True, details["ID"])
    assert (await action(api, "GET", "/domains"))["Domains"][0]["ReturnPathDomainVerified"] is True
    zone.remove("pm-bounces.rp.example.com")  # the CNAME removed: bounces would not reach us any more
    assert (await action(api, "PUT", verify))["ReturnPathDomainVerified"] is False
    plain = await created(api, "norp.example.com")
    assert (await action(api, "PUT", f"/domains/{plain['ID']}/verifyReturnPath"))["ReturnPathDomainVerified"] is False


async def test_verify_spf_follows_includes_and_redirects(api: Any, zone: ZoneServer) -> None:
    details = await created(api, "spf.example.com")
    verify = f"/domains/{details['ID']}/verifyspf"
    assert (await action(api, "POST", verify))["SPFVerified"] is False
    zone.txt("spf.example.com", "google-site-verification=abc", "v=spf1 include:_spf.example.org ~all")
    assert (await action(api, "POST", verify))["SPFVerified"] is False
    zone.txt("_spf.example.org", "v=spf1 redirect=_net.example.org")
    zone.txt("_net.example.org", f"v=spf1 ip4:192.0.2.0/24 include:{BOUNCE_DOMAIN} -all")
    assert (await action(api, "POST", f"/domains/{details['ID']}/verifySPF"))["SPFVerified"] is True
    zone.txt("spf.example.com", "v=spf1 -all")  # two SPF records: a permanent error (RFC 7208 §4.5)
    assert (await action(api, "POST", verify))["SPFVerified"] is False
    zone.remove("spf.example.com")
    zone.txt("loop.example.com", "v=spf1 include:loop.example.com")
    zone.txt("spf.example.com", "v=spf1 include:loop.example.com")  # a loop ends; it does not hang
    assert (await action(api, "POST", verify))["SPFVerified"] is False
