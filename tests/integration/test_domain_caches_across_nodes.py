"""What sending reads of domains is cached, and a change made on another node reaches those caches as soon as it
is announced (the store's "domains" change notice: PostgreSQL NOTIFY, or the changes file of one SQLite file
shared by split roles), not after their reload interval: the signing keys after a DKIM verification or
rotation, the sender policy after a confirmation, the Return-Path domain after its verification. Two runtimes,
each with its own store, on one database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from integration.dns_zone import ZoneServer
from posthouse.server.config import load_settings
from posthouse.server.errors import SenderNotAllowedError
from posthouse.server.runtime import Runtime
from posthouse.server.services.dkim_keys import StoredSigningKeys
from posthouse.server.services.returnpaths import ReturnPaths
from posthouse.server.services.sender_policy import SenderPolicy
from posthouse.server.store import open_store_for
from posthouse.server.store.base import MessageFilter
from support import async_wait_for

NEVER = 3600.0  # a reload interval no test waits for: only an announcement can make a cache reload


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with ZoneServer() as server:
        yield server


@pytest.fixture
async def nodes(database_url: str, tmp_path: Path, zone: ZoneServer
                ) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, Runtime, dict[str, str]]]:
    made: list[tuple[Runtime, httpx.AsyncClient]] = []
    account = ""
    try:
        for name in ("a", "b"):
            store = open_store_for(database_url)
            await store.open()
            await store.migrate()
            settings = load_settings({"delivery": "sandbox", "data_dir": str(tmp_path / name),
                                      "dns_nameservers": zone.nameserver,
                                      "return_path": "pm_bounces@bounces.posthouse-mail.net",
                                      "sender_confirmation_from": "postmaster@posthouse-mail.net"}, environ={})
            runtime = Runtime(settings, store)
            tokens = await runtime.accounts.bootstrap()
            account = tokens[1] if tokens is not None else account
            made.append((runtime, httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app),
                                                    base_url="http://node.test")))
        headers = {"X-Postmark-Account-Token": account, "Accept": "application/json"}
        yield made[0][0], made[0][1], made[1][0], headers
    finally:
        for runtime, client in made:
            await client.aclose()
            await runtime.stop()
            await runtime.store.close()


async def test_signing_keys_on_one_node_follow_a_verification_and_a_rotation_on_another(nodes, zone) -> None:  # type: ignore[no-untyped-def]
    _, a, b, headers = nodes
    keys = StoredSigningKeys(b.store, ttl=NEVER)
    created = (await a.post("/domains", headers=headers, json={"Name": "nodes.example.com"})).json()
    assert await keys.for_domain("nodes.example.com") == ()  # cached: no key
    zone.txt(created["DKIMPendingHost"], created["DKIMPendingTextValue"])
    assert (await a.put(f"/domains/{created['ID']}/verifyDkim", headers=headers)).json()["DKIMVerified"]

    async def b_signs_with(host: str) -> bool:
        return [k.dns_name for k in await keys.for_domain("nodes.example.com")] == [host]

    await async_wait_for(lambda: b_signs_with(created["DKIMPendingHost"]), timeout=5)
    rotated = (await a.post(f"/domains/{created['ID']}/rotatedkim", headers=headers)).json()
    zone.txt(rotated["DKIMPendingHost"], rotated["DKIMPendingTextValue"])
    await a.put(f"/domains/{created['ID']}/verifyDkim", headers=headers)
    await async_wait_for(lambda: b_signs_with(rotated["DKIMPendingHost"]), timeout=5)


async def test_a_confirmation_and_a_return_path_on_one_node_apply_on_the_other(nodes, zone) -> None:  # type: ignore[no-untyped-def]
    node_a, a, b, headers = nodes
    sender_policy = SenderPolicy(b.store, "verified", ttl=NEVER)
    with pytest.raises(SenderNotAllowedError):
        await sender_policy.check("jane@nodes.example.com", "jane@nodes.example.com")  # cached: not allowed
    await a.post("/senders", headers=headers, json={"FromEmail": "jane@nodes.example.com", "Name": "Jane"})
    _, [signature] = await node_a.store.list_senders(0, 1)
    await node_a.domains.confirm(await _token_of(node_a, signature.id))

    async def allowed() -> bool:
        try:
            await sender_policy.check("jane@nodes.example.com", "jane@nodes.example.com")
        except SenderNotAllowedError:
            return False
        return True

    await async_wait_for(allowed, timeout=5)

    return_paths = ReturnPaths(b.store, "pm_bounces", "bounces.posthouse-mail.net", ttl=NEVER)
    assert await return_paths.custom_domain_for("jane@nodes.example.com") is None
    domain = (await a.get("/domains", headers=headers)).json()["Domains"][0]
    await a.put(f"/domains/{domain['ID']}", headers=headers, json={"ReturnPathDomain": "pm-bounces.nodes.example.com"})
    zone.cname("pm-bounces.nodes.example.com", "bounces.posthouse-mail.net")
    await a.put(f"/domains/{domain['ID']}/verifyReturnPath", headers=headers)

    async def b_uses_it() -> bool:
        return await return_paths.custom_domain_for("Jane <jane@nodes.example.com>") == "pm-bounces.nodes.example.com"

    await async_wait_for(b_uses_it, timeout=5)
    await return_paths.refresh()
    assert return_paths.is_return_address("x@PM-BOUNCES.nodes.example.com.")


async def _token_of(runtime: Runtime, sender_id: int) -> str:
    """A confirmation link's token, as the mailed message holds it (the store keeps only its hash)."""
    [message] = (await runtime.store.search_messages(1, MessageFilter(tag="sender-confirmation"), 0, 1))[1]
    full = await runtime.store.get_message(1, message.message_id, with_content=True)
    assert full is not None and full.content is not None
    parsed = message_from_bytes(full.content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).split("/senders/confirm/", 1)[1].split()[0]
