"""`AccountClient.domains` and `.senders`, async and sync, against a real `posthouse serve` whose DNS is a dnslib
server on loopback (so verification finds what the test publishes, and nothing leaves the machine)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

import posthouse
from integration.dns_zone import ZoneServer
from support import ServerProcess, create_postgres_database, drop_postgres_database, require_postgres

BOUNCE_DOMAIN = "bounces.posthouse-mail.net"


@pytest.fixture(scope="module")
def zone() -> Iterator[ZoneServer]:
    with ZoneServer() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def process(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            zone: ZoneServer) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp(f"domains-{request.param}")
    base = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'posthouse.db'}"
    else:
        base = require_postgres()
        url = asyncio.run(create_postgres_database(base))
    server = ServerProcess(folder / "data", url, env={
        "POSTHOUSE_DNS_NAMESERVERS": zone.nameserver, "POSTHOUSE_RETURN_PATH": f"pm_bounces@{BOUNCE_DOMAIN}",
        "POSTHOUSE_SENDER_CONFIRMATION_FROM": "postmaster@posthouse-mail.net"})
    try:
        with server:
            yield server
    finally:
        if base is not None:
            asyncio.run(drop_postgres_database(base, url))


async def test_domains(process: ServerProcess, zone: ZoneServer, flavour) -> None:  # type: ignore[no-untyped-def]
    name = f"sdk-{uuid.uuid4().hex[:10]}.example.com"
    account = flavour.account_client(process.account_token, process.base_url)
    try:
        created = await flavour(account.domains.create(posthouse.DomainRequest(name=name)))
        assert isinstance(created, posthouse.DomainDetails)
        assert (created.name, created.dkim_verified, created.dkim_update_status) == (name, False, "Pending")
        assert created.dkim_pending_host.endswith(f"._domainkey.{name}")
        assert created.return_path_domain_cname_value == BOUNCE_DOMAIN
        assert [r.state for r in created.dkim_records] == ["Pending"]
        assert (await flavour(account.domains.get(created.id))).dkim_pending_text_value == \
            created.dkim_pending_text_value
        page = await flavour(account.domains.list(count=500))
        assert isinstance(page, posthouse.DomainList) and isinstance(page.domains[0], posthouse.DomainSummary)
        assert name in {d.name for d in page.domains}
        with pytest.raises(posthouse.InvalidRequestError) as taken:
            await flavour(account.domains.create(posthouse.DomainRequest(name=name.upper())))
        assert taken.value.error_code == 512

        edited = await flavour(account.domains.edit(created.id, posthouse.DomainRequest(
            return_path_domain=f"pm-bounces.{name}")))
        assert (edited.return_path_domain, edited.return_path_domain_verified) == (f"pm-bounces.{name}", False)
        zone.cname(f"pm-bounces.{name}", BOUNCE_DOMAIN)
        assert (await flavour(account.domains.verify_return_path(created.id))).return_path_domain_verified
        zone.txt(name, f"v=spf1 include:{BOUNCE_DOMAIN} ~all")
        assert (await flavour(account.domains.verify_spf(created.id))).spf_verified

        assert not (await flavour(account.domains.verify_dkim(created.id))).dkim_verified
        zone.txt(created.dkim_pending_host, created.dkim_pending_text_value)
        verified = await flavour(account.domains.verify_dkim(created.id))
        assert (verified.dkim_verified, verified.dkim_host) == (True, created.dkim_pending_host)
        rotated = await flavour(account.domains.rotate_dkim(created.id))
        assert rotated.dkim_update_status == "Pending" and rotated.dkim_host == created.dkim_pending_host
        with pytest.raises(posthouse.InvalidRequestError) as pending:
            await flavour(account.domains.rotate_dkim(created.id))
        assert pending.value.error_code == 505

        assert await flavour(account.domains.delete(created.id)) is None
        with pytest.raises(posthouse.APIError) as gone:
            await flavour(account.domains.get(created.id))
        assert gone.value.error_code == 510
    finally:
        await flavour.close(account)


async def test_senders(process: ServerProcess, zone: ZoneServer, flavour) -> None:  # type: ignore[no-untyped-def]
    domain = f"sdk-{uuid.uuid4().hex[:10]}.example.com"
    account = flavour.account_client(process.account_token, process.base_url)
    try:
        created = await flavour(account.senders.create(posthouse.SenderSignatureRequest(
            from_email=f"jane@{domain}", name="Jane", confirmation_personal_note="For the SDK test.")))
        assert isinstance(created, posthouse.SenderSignatureDetails)
        assert (created.email_address, created.domain, created.confirmed) == (f"jane@{domain}", domain, False)
        assert created.confirmation_personal_note == "For the SDK test."
        assert created.dkim_pending_host.endswith(f"._domainkey.{domain}")  # its domain was added with it
        assert (await flavour(account.senders.get(created.id))).name == "Jane"
        page = await flavour(account.senders.list(count=500))
        assert isinstance(page, posthouse.SenderSignatureList)
        assert f"jane@{domain}" in {s.email_address for s in page.sender_signatures}
        edited = await flavour(account.senders.edit(created.id, posthouse.SenderSignatureRequest(
            name="Jane Doe", reply_to_email=f"help@{domain}")))
        assert (edited.name, edited.reply_to_email_address) == ("Jane Doe", f"help@{domain}")
        assert await flavour(account.senders.resend(created.id)) is None
        zone.txt(domain, f"v=spf1 include:{BOUNCE_DOMAIN} -all")
        assert (await flavour(account.senders.verify_spf(created.id))).spf_verified
        zone.txt(created.dkim_pending_host, created.dkim_pending_text_value)
        domains = await flavour(account.domains.list(count=500))
        [domain_id] = [d.id for d in domains.domains if d.name == domain]
        await flavour(account.domains.verify_dkim(domain_id))
        renewed = await flavour(account.senders.request_new_dkim(created.id))
        assert renewed.dkim_host == created.dkim_pending_host and renewed.dkim_pending_host != ""
        with pytest.raises(posthouse.InvalidRequestError) as duplicate:
            await flavour(account.senders.create(posthouse.SenderSignatureRequest(from_email=f"JANE@{domain}",
                                                                                  name="Again")))
        assert duplicate.value.error_code == 504
        assert await flavour(account.senders.delete(created.id)) is None
        with pytest.raises(posthouse.APIError) as gone:
            await flavour(account.senders.get(created.id))
        assert gone.value.error_code == 501
    finally:
        await flavour.close(account)
