"""The hot paths' hints see what another node changed as soon as it is announced (issue 12 item 4): a
suppression or webhook made through node A's API reaches node B's hints without waiting for their reload
interval. Two runtimes, each with its own store (its own connections, and on PostgreSQL its own LISTEN), on
one database: PostgreSQL nodes, or split roles on one SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.services.hints import SuppressionHints, WebhookHints
from posthouse.server.store import open_store_for
from support import async_wait_for

MESSAGE = {"From": "app@example.com", "Subject": "Hi", "TextBody": "Hello"}
NEVER = 3600.0  # a reload interval no test waits for: only an announcement can make the hints reload


@dataclass
class Node:
    runtime: Runtime
    client: httpx.AsyncClient

    @property
    def server_id(self) -> int:
        return 1  # the bootstrap's "default" server


@pytest.fixture
async def nodes(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Node, str]]:
    made: list[tuple[Runtime, httpx.AsyncClient]] = []
    token = ""
    try:
        for name in ("a", "b"):
            store = open_store_for(database_url)
            await store.open()
            await store.migrate()
            runtime = Runtime(load_settings({"delivery": "sandbox", "data_dir": str(tmp_path / name)}, environ={}),
                              store)
            tokens = await runtime.accounts.bootstrap()
            token = tokens[0] if tokens is not None else token
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://node.test")
            made.append((runtime, client))
        (a, b) = (Node(*made[0]), Node(*made[1]))
        yield a, b, token
    finally:
        for runtime, client in made:
            await client.aclose()
            await runtime.stop()
            await runtime.store.close()


async def test_a_suppression_made_on_one_node_applies_on_the_other_at_once(nodes: tuple[Node, Node, str]) -> None:
    a, b, token = nodes
    headers = {"X-Postmark-Server-Token": token, "Accept": "application/json"}
    hints = b.runtime.sending.hints
    assert isinstance(hints, SuppressionHints)
    hints.ttl = NEVER
    assert not await hints.may_suppress(b.server_id, {"outbound"})  # loaded: no suppression anywhere
    answer = await a.client.post("/message-streams/outbound/suppressions", headers=headers,
                                 json={"Suppressions": [{"EmailAddress": "gone@example.com"}]})
    assert answer.status_code == 200, answer.text

    async def b_knows() -> bool:
        return await hints.may_suppress(b.server_id, {"outbound"})

    await async_wait_for(b_knows, timeout=5)
    answer = await b.client.post("/email", headers=headers, json={**MESSAGE, "To": "gone@example.com"})
    assert (answer.status_code, answer.json()["ErrorCode"]) == (422, 406)


async def test_a_webhook_made_on_one_node_is_wanted_on_the_other_at_once(nodes: tuple[Node, Node, str]) -> None:
    a, b, token = nodes
    headers = {"X-Postmark-Server-Token": token, "Accept": "application/json"}
    hints = b.runtime.webhook_hints
    assert isinstance(hints, WebhookHints)
    hints.ttl = NEVER
    assert not await hints.wants(b.server_id, "outbound", "Delivery")  # loaded: no webhook
    answer = await a.client.post("/webhooks", headers=headers, json={
        "Url": "https://hooks.example.com/posthouse", "MessageStream": "outbound",
        "Triggers": {"Delivery": {"Enabled": True}}})
    assert answer.status_code == 200, answer.text

    async def b_wants() -> bool:
        return await hints.wants(b.server_id, "outbound", "Delivery")

    await async_wait_for(b_wants, timeout=5)

    answer = await a.client.delete(f"/webhooks/{answer.json()['ID']}", headers=headers)
    assert answer.status_code == 200, answer.text

    async def b_forgot() -> bool:
        return not await hints.wants(b.server_id, "outbound", "Delivery")

    await async_wait_for(b_forgot, timeout=5)


async def test_a_hard_bounce_recorded_by_one_nodes_worker_applies_on_the_other_at_once(
        nodes: tuple[Node, Node, str]) -> None:
    """The suppression a delivery result writes (the worker's hot path) is announced in that transaction."""
    from test_queue import LEASE, T0, hard_bounce

    a, b, token = nodes
    headers = {"X-Postmark-Server-Token": token, "Accept": "application/json"}
    hints = b.runtime.sending.hints
    assert isinstance(hints, SuppressionHints)
    hints.ttl = NEVER
    answer = await a.client.post("/email", headers=headers, json={**MESSAGE, "To": "bounces@example.com"})
    assert answer.status_code == 200, answer.text
    assert not await hints.may_suppress(b.server_id, {"outbound"})
    store = a.runtime.store
    (row,) = await store.claim_deliveries("worker-a", T0, 10, T0 + LEASE)
    await store.record_attempts([hard_bounce(store, row, "worker-a")])

    async def b_knows() -> bool:
        return await hints.may_suppress(b.server_id, {"outbound"})

    await async_wait_for(b_knows, timeout=5)
