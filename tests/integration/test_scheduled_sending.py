"""Scheduled sending (a Posthouse extension): SendAt, release by time, cancel and reschedule, their races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.services.clock import Clock, to_micros
from posthouse.server.store.base import Store

MESSAGE = {"From": "app@example.com", "To": "user@example.com", "Subject": "Later", "TextBody": "Hi"}
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class MovableClock(Clock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def micros(self) -> int:
        return to_micros(self.moment)


class Scheduled:
    def __init__(self, runtime: Runtime, client: httpx.AsyncClient, token: str, clock: MovableClock) -> None:
        self.runtime = runtime
        self.client = client
        self.clock = clock
        self.headers = {"X-Postmark-Server-Token": token, "Accept": "application/json"}

    async def send(self, **fields: object) -> httpx.Response:
        return await self.client.post("/email", headers=self.headers, json={**MESSAGE, **fields})

    async def status(self, message_id: str) -> str:
        answer = await self.client.get(f"/messages/outbound/{message_id}/details", headers=self.headers)
        return answer.json()["Status"]  # type: ignore[no-any-return]

    async def claim(self) -> list[str]:
        now = self.clock.micros()
        rows = await self.runtime.store.claim_deliveries("test-worker", now, 1000, now + 30 * 86_400_000_000)
        return [r.message_id for r in rows]


@pytest.fixture
async def scheduled(store: Store) -> AsyncIterator[Scheduled]:
    clock = MovableClock(T0)
    runtime = Runtime(load_settings({"delivery": "sandbox"}, environ={}), store, clock=clock)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://posthouse.test") as client:
        yield Scheduled(runtime, client, tokens[0], clock)
    await runtime.stop()


async def test_a_scheduled_message_is_released_at_its_time_and_not_before(scheduled: Scheduled) -> None:
    answer = await scheduled.send(SendAt="2030-01-01T13:00:00+01:00")  # the same instant as T0
    assert answer.status_code == 200, answer.text
    now_id = answer.json()["MessageID"]
    later = await scheduled.send(SendAt=(T0 + timedelta(hours=2)).isoformat())
    later_id = later.json()["MessageID"]
    assert await scheduled.status(now_id) == "Queued"  # 13:00+01:00 is 12:00Z: due now
    assert await scheduled.status(later_id) == "Scheduled"
    assert await scheduled.claim() == [now_id]
    scheduled.clock.moment = T0 + timedelta(hours=2) - timedelta(microseconds=1)
    assert await scheduled.claim() == []
    assert await scheduled.status(later_id) == "Scheduled"
    scheduled.clock.moment = T0 + timedelta(hours=2)
    assert await scheduled.status(later_id) == "Queued"
    assert await scheduled.claim() == [later_id]


async def test_status_filters_tell_scheduled_from_queued(scheduled: Scheduled) -> None:
    await scheduled.send()
    await scheduled.send(SendAt="2030-01-02T00:00:00Z")
    found = {}
    for status in ("queued", "scheduled"):
        answer = await scheduled.client.get(f"/messages/outbound?count=10&offset=0&status={status}",
                                            headers=scheduled.headers)
        found[status] = [m["Status"] for m in answer.json()["Messages"]]
    assert found == {"queued": ["Queued"], "scheduled": ["Scheduled"]}


@pytest.mark.parametrize(("send_at", "error"), [
    ("2030-01-01T12:00:00", "Use ISO 8601 with an offset"),
    ("tomorrow", "Use ISO 8601 with an offset"),
    ("2030-02-15T00:00:00Z", "at most 30 days ahead"),
])
async def test_bad_send_at_values_are_refused(scheduled: Scheduled, send_at: str, error: str) -> None:
    answer = await scheduled.send(SendAt=send_at)
    assert answer.status_code == 422
    assert answer.json()["ErrorCode"] == 300 and error in answer.json()["Message"]


async def test_a_past_send_at_sends_now(scheduled: Scheduled) -> None:
    message_id = (await scheduled.send(SendAt="2001-01-01T00:00:00Z")).json()["MessageID"]
    assert await scheduled.status(message_id) == "Queued"
    assert await scheduled.claim() == [message_id]


async def test_cancel_then_cancel_again_then_reschedule(scheduled: Scheduled) -> None:
    message_id = (await scheduled.send(SendAt="2030-01-05T00:00:00Z")).json()["MessageID"]
    answer = await scheduled.client.put(f"/messages/outbound/{message_id}/cancel", headers=scheduled.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"MessageID": message_id, "Status": "Cancelled", "SendAt": None,
                             "Cancelled": ["user@example.com"], "Released": [], "ErrorCode": 0, "Message": "OK"}
    assert await scheduled.status(message_id) == "Failed"  # Postmark's clients know no "Cancelled"
    again = await scheduled.client.put(f"/messages/outbound/{message_id}/cancel", headers=scheduled.headers)
    assert again.status_code == 422 and again.json()["ErrorCode"] == 1602
    moved = await scheduled.client.put(f"/messages/outbound/{message_id}/schedule", headers=scheduled.headers,
                                       json={"SendAt": "2030-01-03T00:00:00Z"})
    assert moved.status_code == 422 and moved.json()["ErrorCode"] == 1601
    scheduled.clock.moment = T0 + timedelta(days=10)
    assert await scheduled.claim() == []


async def test_reschedule_moves_the_release(scheduled: Scheduled) -> None:
    message_id = (await scheduled.send(SendAt="2030-01-05T00:00:00Z")).json()["MessageID"]
    moved = await scheduled.client.put(f"/messages/outbound/{message_id}/schedule", headers=scheduled.headers,
                                       json={"SendAt": "2030-01-01T12:30:00Z"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["Status"] == "Scheduled" and moved.json()["SendAt"] == "2030-01-01T12:30:00+00:00"
    scheduled.clock.moment = T0 + timedelta(minutes=30)
    assert await scheduled.claim() == [message_id]
    # Released (claimed): neither cancel nor reschedule can take it back.
    cancel = await scheduled.client.put(f"/messages/outbound/{message_id}/cancel", headers=scheduled.headers)
    assert cancel.status_code == 422 and cancel.json()["ErrorCode"] == 1601
    assert "already released" in cancel.json()["Message"]


async def test_cancel_and_release_racing_never_do_both(scheduled: Scheduled) -> None:
    """Messages fall due while cancels run concurrently: each message ends up claimed or cancelled, never
    both, and every cancel answer says which."""
    ids = [(await scheduled.send(SendAt="2030-01-01T12:00:01Z")).json()["MessageID"] for _ in range(40)]
    scheduled.clock.moment = T0 + timedelta(seconds=1)

    async def cancel(message_id: str) -> tuple[str, int]:
        answer = await scheduled.client.put(f"/messages/outbound/{message_id}/cancel", headers=scheduled.headers)
        return message_id, answer.json()["ErrorCode"]

    claimed_batches, *cancels = await asyncio.gather(
        asyncio.gather(*(scheduled.claim() for _ in range(4))), *(cancel(i) for i in ids))
    claimed = {m for batch in claimed_batches for m in batch}
    said_cancelled = {m for m, code in cancels if code == 0}
    said_released = {m for m, code in cancels if code == 1601}
    assert said_cancelled | said_released == set(ids)
    assert claimed == said_released and not (claimed & said_cancelled)
    states = {r[0]: r[1] for r in await scheduled.runtime.store.query("SELECT message_id, state FROM deliveries")}
    assert all(states[m] == "cancelled" for m in said_cancelled)
    assert all(states[m] == "sending" for m in claimed)


async def test_unknown_message_cancel_is_701(scheduled: Scheduled) -> None:
    answer = await scheduled.client.put("/messages/outbound/00000000-0000-0000-0000-000000000001/cancel",
                                        headers=scheduled.headers)
    assert answer.status_code in (404, 422) and answer.json()["ErrorCode"] == 701
