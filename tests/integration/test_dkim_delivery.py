"""The delivery worker DKIM-signs what it sends, after personalisation, in relay and sandbox delivery, on
SQLite and PostgreSQL: the real runtime, the real API over httpx, a recording SMTP sink, dkimpy verifying."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from dkim.canonicalization import Relaxed  # type: ignore[import-untyped]

from dkim_support import assert_dkimpy_verifies_all, records_for, signature_count
from integration.smtp_peers import RecordingSink
from posthouse.server.config import load_settings
from posthouse.server.domain import dkim
from posthouse.server.domain.dkim_keys import DkimAlgorithm, DkimKey, generate_private_key
from posthouse.server.errors import StoreError
from posthouse.server.runtime import Runtime
from posthouse.server.services.dkim_keys import SigningKeys, StaticSigningKeys
from posthouse.server.store.base import Store
from support import async_wait_for

RSA = DkimKey("shop.example.com", "ph2030", DkimAlgorithm.RSA_SHA256, generate_private_key(DkimAlgorithm.RSA_SHA256))
ED25519 = DkimKey("shop.example.com", "ph2030e", DkimAlgorithm.ED25519_SHA256,
                  generate_private_key(DkimAlgorithm.ED25519_SHA256))
RECORDS = records_for(RSA, ED25519)
HTML = '<p>Your order: <a href="https://shop.example.com/o/7">track it</a></p>'


class Api:
    def __init__(self, runtime: Runtime, client: httpx.AsyncClient, token: str) -> None:
        self.runtime, self.client, self.token = runtime, client, token

    async def send(self, **fields: Any) -> str:
        message = {"From": "Shop <orders@shop.example.com>", "To": "ann@example.net", "Subject": "Your order",
                   "HtmlBody": HTML, "TextBody": "Your order: https://shop.example.com/o/7", **fields}
        response = await self.client.post("/email", json=message, headers={
            "X-Postmark-Server-Token": self.token, "Accept": "application/json"})
        assert response.status_code == 200, response.text
        return str(response.json()["MessageID"])


@asynccontextmanager
async def started(store: Store, tmp_path: Path, keys: SigningKeys | None, **settings: str) -> AsyncIterator[Api]:
    runtime = Runtime(load_settings({"data_dir": str(tmp_path), "poll_interval": "50ms", **settings}, environ={}),
                      store, signing_keys=keys)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://t") as client:
        await runtime.start_worker()
        try:
            yield Api(runtime, client, tokens[0])
        finally:
            await runtime.stop()


@pytest.fixture
def sink() -> Any:
    with RecordingSink() as recording:
        yield recording


def signature_fields(data: bytes) -> list[bytes]:
    fields, _ = dkim.split_message(data)
    return [f for f in fields if f.lower().startswith(b"dkim-signature:")]


def arrivals(sink: RecordingSink, recipient: str) -> list[bytes]:
    return [m.data for m in sink.messages if recipient in m.rcpt_tos]


async def test_relayed_mail_is_signed_per_copy_after_personalisation(store: Store, tmp_path: Path,
                                                                      sink: RecordingSink) -> None:
    keys = StaticSigningKeys([RSA, ED25519])
    async with started(store, tmp_path, keys, delivery="relay", relay_url=f"smtp://127.0.0.1:{sink.port}") as api:
        await api.send(To="ann@example.net, bob@example.net")  # untracked: the same bytes to both
        await api.send(To="cy@example.net, di@example.net", TrackOpens=True, TrackLinks="HtmlAndText")
        await api.send(From="news@other.example", To="ed@example.net")  # no key for other.example

        async def all_arrived() -> bool:
            return len(sink.messages) == 5

        await async_wait_for(all_arrived, timeout=30)
    for recipient in ("ann@example.net", "bob@example.net", "cy@example.net", "di@example.net"):
        (data,) = arrivals(sink, recipient)
        assert signature_count(data) == 2  # an RSA and an Ed25519 signature, both good
        assert_dkimpy_verifies_all(data, RECORDS)
        assert b"d=shop.example.com;" in data
    # Untracked content went out unchanged to both (one transaction each, VERP): signed once for both.
    ann, bob = arrivals(sink, "ann@example.net")[0], arrivals(sink, "bob@example.net")[0]
    assert signature_fields(ann) == signature_fields(bob)
    # Tracked copies differ (each carries its recipient's tokens) and each is signed over its own bytes.
    cy, di = arrivals(sink, "cy@example.net")[0], arrivals(sink, "di@example.net")[0]
    assert re.findall(rb"/o/[A-Za-z0-9_-]{28}", cy) != re.findall(rb"/o/[A-Za-z0-9_-]{28}", di)
    assert signature_fields(cy) != signature_fields(di)
    (unsigned,) = arrivals(sink, "ed@example.net")
    assert signature_count(unsigned) == 0


async def test_without_signing_keys_nothing_is_signed(store: Store, tmp_path: Path, sink: RecordingSink) -> None:
    async with started(store, tmp_path, None, delivery="relay", relay_url=f"smtp://127.0.0.1:{sink.port}") as api:
        # No key folder and no domain added through the Domains API: the stored keys have none for the sender.
        assert await api.runtime.signing_keys.for_domain("shop.example.com") == ()
        await api.send()

        async def arrived() -> bool:
            return len(sink.messages) == 1

        await async_wait_for(arrived, timeout=30)
    assert signature_count(sink.messages[0].data) == 0


async def test_the_sandbox_copy_is_signed_as_it_would_have_gone_out(store: Store, tmp_path: Path) -> None:
    """Nothing leaves the sandbox, but a simulated bounce keeps the header of the copy that would have: signed,
    its body hash that of the stored message's body."""
    async with started(store, tmp_path, StaticSigningKeys([RSA]), delivery="sandbox") as api:
        message_id = await api.send(To="HardBounce@bounce-testing.postmarkapp.com")
        headers = {"X-Postmark-Server-Token": api.token, "Accept": "application/json"}

        async def bounced() -> Any:
            found = (await api.client.get("/bounces", params={"count": 10, "offset": 0}, headers=headers)).json()
            return found["Bounces"]

        (bounce,) = await async_wait_for(bounced, timeout=30)
        dump = (await api.client.get(f"/bounces/{bounce['ID']}/dump", headers=headers)).json()["Body"]
        stored = (await store.query_one("SELECT content FROM messages WHERE message_id = ?", (message_id,)))
    assert stored is not None
    copy = dump.split("DKIM-Signature:", 1)[1]
    assert "d=shop.example.com;" in copy and "s=ph2030;" in copy
    bh = re.sub(r"\s+", "", copy.split("bh=", 1)[1].split(";", 1)[0])
    _, body = dkim.split_message(bytes(stored[0]))
    assert bh == base64.b64encode(hashlib.sha256(Relaxed.canonicalize_body(body)).digest()).decode()


class FailingKeys:
    """Keys that cannot be had (the database is down) for one domain, a broken key for another."""

    async def for_domain(self, domain: str) -> Sequence[DkimKey]:
        if domain == "down.example":
            raise StoreError("database unavailable")
        if domain == "broken.example":
            return [DkimKey(domain, "s1", DkimAlgorithm.RSA_SHA256, ED25519.private_key_pem)]
        return []


@pytest.mark.parametrize(("sender", "reason"), [
    ("a@down.example", "the DKIM keys of down.example could not be read"),
    ("a@broken.example", "DKIM signing for broken.example failed"),
])
async def test_mail_that_cannot_be_signed_waits_and_is_never_sent_unsigned(
        store: Store, tmp_path: Path, sink: RecordingSink, sender: str, reason: str) -> None:
    async with started(store, tmp_path, FailingKeys(), delivery="relay", retry_schedule="1h",
                             relay_url=f"smtp://127.0.0.1:{sink.port}") as api:
        message_id = await api.send(From=sender)

        async def deferred() -> Any:
            return await store.query_one(
                "SELECT d.state, e.details FROM deliveries d JOIN events e ON e.message_id = d.message_id "
                "WHERE d.message_id = ? AND e.type = 'Transient'", (message_id,))

        state, details = await async_wait_for(deferred, timeout=30)
    assert state == "deferred" and reason in details
    assert sink.messages == []
