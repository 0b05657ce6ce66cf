"""The official Python clients' domains and sender signatures calls (docs/postmark-api.md §8.4), unchanged, against
a real `posthouse serve` whose DNS is a dnslib server on loopback, so verification finds what the test publishes
and no lookup leaves the machine: postmarker's `domains` and `senders` managers and postmark-python's
`AccountClient.domain` and `.signature`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import postmark
import pytest
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError

from integration.dns_zone import ZoneServer
from support import ServerProcess, create_postgres_database, drop_postgres_database, require_postgres

BOUNCE_DOMAIN = "bounces.posthouse-mail.net"


@pytest.fixture(scope="module")
def zone() -> Iterator[ZoneServer]:
    with ZoneServer() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           zone: ZoneServer) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp(f"domains-{request.param}")
    base = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'posthouse.db'}"
    else:
        base = require_postgres()
        url = asyncio.run(create_postgres_database(base))
    process = ServerProcess(folder / "data", url, env={
        "POSTHOUSE_DNS_NAMESERVERS": zone.nameserver, "POSTHOUSE_RETURN_PATH": f"pm_bounces@{BOUNCE_DOMAIN}",
        "POSTHOUSE_SENDER_CONFIRMATION_FROM": "postmaster@posthouse-mail.net"})
    try:
        with process:
            yield process
    finally:
        if base is not None:
            asyncio.run(drop_postgres_database(base, url))


@pytest.fixture
def pm(server: ServerProcess) -> PostmarkClient:
    return PostmarkClient(server_token=server.server_token, account_token=server.account_token,
                          root_api_url=server.base_url + "/")


def test_postmarker_domains(pm: PostmarkClient, zone: ZoneServer) -> None:
    domain = pm.domains.create("mail.example.com")
    assert (domain.Name, domain.DKIMVerified, domain.DKIMUpdateStatus) == ("mail.example.com", False, "Pending")
    assert pm.domains.get(domain.ID).Name == "mail.example.com"
    assert [d.Name for d in pm.domains.all()] == ["mail.example.com"]
    domain.edit(ReturnPathDomain="pm-bounces.mail.example.com")
    assert domain.ReturnPathDomain == "pm-bounces.mail.example.com"
    zone.cname("pm-bounces.mail.example.com", BOUNCE_DOMAIN)
    assert domain.verifyreturnpath()["ReturnPathDomainVerified"] is True
    zone.txt("mail.example.com", f"v=spf1 a mx include:{BOUNCE_DOMAIN} ~all")
    assert domain.verifyspf()["SPFVerified"] is True
    assert domain.verifydkim()["DKIMVerified"] is False
    zone.txt(domain.DKIMPendingHost, domain.DKIMPendingTextValue)
    verified = domain.verifydkim()
    assert (verified["DKIMVerified"], verified["DKIMHost"]) == (True, domain.DKIMPendingHost)
    rotated = domain.rotatedkim()
    assert rotated["DKIMUpdateStatus"] == "Pending" and rotated["DKIMPendingHost"] != domain.DKIMPendingHost
    with pytest.raises(ClientError) as again:
        domain.rotatedkim()
    assert again.value.error_code == 505
    with pytest.raises(ClientError) as taken:
        pm.domains.create("MAIL.example.com")
    assert taken.value.error_code == 512
    assert domain.delete() == "Domain mail.example.com removed."
    assert pm.domains.all() == []


def test_postmarker_sender_signatures(pm: PostmarkClient, zone: ZoneServer) -> None:
    signature = pm.senders.create("jane@senders.example.com", "Jane")
    assert (signature.EmailAddress, signature.Confirmed) == ("jane@senders.example.com", False)
    assert pm.senders.get(signature.ID).EmailAddress == "jane@senders.example.com"
    assert [s.EmailAddress for s in pm.senders.all()] == ["jane@senders.example.com"]
    signature.edit(Name="Jane Doe")  # postmarker sends ReplyToEmail and ReturnPathDomain as null: unchanged
    assert (signature.Name, signature.ReplyToEmailAddress) == ("Jane Doe", "")
    assert signature.resend() == "Confirmation email for Sender Signature jane@senders.example.com was re-sent."
    zone.txt("senders.example.com", f"v=spf1 include:{BOUNCE_DOMAIN} -all")
    assert signature.verifyspf()["SPFVerified"] is True
    zone.txt(signature.DKIMPendingHost, signature.DKIMPendingTextValue)
    [domain] = pm.domains.all()
    assert domain.verifydkim()["DKIMVerified"] is True
    with pytest.warns(DeprecationWarning, match="deprecated"):  # postmarker warns: the endpoint is deprecated
        renewed = signature.requestnewdkim()
    assert renewed["DKIMHost"] == signature.DKIMPendingHost and renewed["DKIMPendingHost"] != ""
    with pytest.raises(ClientError) as public:
        pm.senders.create("someone@gmail.com", "Someone")
    assert public.value.error_code == 503
    assert signature.delete() == "Signature jane@senders.example.com removed."
    assert pm.senders.all() == []


async def test_postmark_python_domains_and_signatures(server: ServerProcess, zone: ZoneServer) -> None:
    assert server.account_token is not None
    async with postmark.AccountClient(server.account_token, base_url=server.base_url, retries=0) as client:
        domain = await client.domain.create("python.example.com", return_path_domain="pm-bounces.python.example.com")
        assert (domain.name, domain.dkim_verified, domain.return_path_domain_verified) == \
            ("python.example.com", False, False)
        page = await client.domain.list(count=100, offset=0)
        assert "python.example.com" in {d.name for d in page.items} and page.total == len(page.items)
        assert (await client.domain.get(domain.id)).dkim_pending_host == domain.dkim_pending_host
        assert domain.dkim_pending_host is not None and domain.dkim_pending_text_value is not None
        zone.txt(domain.dkim_pending_host, domain.dkim_pending_text_value)
        zone.cname("pm-bounces.python.example.com", BOUNCE_DOMAIN)
        assert (await client.domain.verify_dkim(domain.id)).dkim_verified
        assert (await client.domain.verify_return_path(domain.id)).return_path_domain_verified
        spf = await client.domain.verify_spf(domain.id)
        assert (spf.spf_host, spf.spf_verified) == ("python.example.com", False)
        rotated = await client.domain.rotate_dkim(domain.id)
        assert rotated.dkim_update_status == "Pending" and rotated.dkim_host == domain.dkim_pending_host
        edited = await client.domain.edit(domain.id, return_path_domain="return.python.example.com")
        assert (edited.return_path_domain, edited.return_path_domain_verified) == ("return.python.example.com", False)

        signature = await client.signature.create("ops@python.example.com", "Ops",
                                                  reply_to="help@python.example.com",
                                                  confirmation_personal_note="From the Python test.")
        assert (signature.email_address, signature.confirmed) == ("ops@python.example.com", False)
        assert signature.dkim_host == domain.dkim_pending_host  # the signature's domain's key
        assert (await client.signature.get(signature.id)).reply_to_email_address == "help@python.example.com"
        listed = await client.signature.list(count=100, offset=0)
        assert [s.email_address for s in listed.items] == ["ops@python.example.com"]
        assert (await client.signature.edit(signature.id, "Operations")).name == "Operations"
        resent = await client.signature.resend_confirmation(signature.id)
        assert resent.error_code == 0 and "ops@python.example.com" in resent.message
        assert (await client.signature.verify_spf(signature.id)).spf_verified is False
        zone.txt(rotated.dkim_pending_host or "", rotated.dkim_pending_text_value or "")
        assert (await client.domain.verify_dkim(domain.id)).dkim_host == rotated.dkim_pending_host
        renewal = await client.signature.request_new_dkim(signature.id)
        assert renewal.error_code == 0 and renewal.message
        assert (await client.signature.delete(signature.id)).error_code == 0
        deleted = await client.domain.delete(domain.id)
        assert (deleted.error_code, deleted.message) == (0, "Domain python.example.com removed.")
