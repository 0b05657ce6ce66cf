"""Idempotency keys (a Posthouse extension): replay, mismatch, in flight, batches, per server, stale holds."""

from __future__ import annotations

import httpx
import pytest

from posthouse.server.errors import ApiError
from posthouse.server.services.clock import Clock
from posthouse.server.services.idempotency import IdempotencyService, Replay
from posthouse.server.store.idempotency import IdempotencyKey
from posthouse.server.workers.housekeeping import Housekeeper

MESSAGE = {"From": "app@example.com", "To": "user@example.com", "Subject": "Once", "TextBody": "Only once"}


async def post(api, path: str, body: object, key: str | None = "key-1") -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = dict(api.server_headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.client.post(path, headers=headers, json=body)  # type: ignore[no-any-return]


async def test_the_same_key_and_body_replays_the_answer_and_sends_once(api) -> None:  # type: ignore[no-untyped-def]
    first = await post(api, "/email", MESSAGE)
    again = await post(api, "/email", MESSAGE)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert await api.count("messages") == 1


async def test_the_same_key_with_another_body_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    await post(api, "/email", MESSAGE)
    other = await post(api, "/email", {**MESSAGE, "Subject": "Different"})
    assert other.status_code == 422 and other.json()["ErrorCode"] == 1610
    assert await api.count("messages") == 1


async def test_a_key_still_in_flight_answers_409(api) -> None:  # type: ignore[no-untyped-def]
    import json

    server = await api.runtime.store.get_server_by_name("default")
    service = api.runtime.sending.idempotency
    body = json.dumps(MESSAGE).encode()
    held = await service.begin(server.id, "busy", "POST", "/email", body)
    assert isinstance(held, IdempotencyKey)
    answer = await api.client.post("/email", headers={**api.server_headers, "Idempotency-Key": "busy"}, content=body)
    assert answer.status_code == 409 and answer.json()["ErrorCode"] == 1611
    assert await api.count("messages") == 0


async def test_a_batch_retried_with_its_key_sends_each_message_once(api) -> None:  # type: ignore[no-untyped-def]
    batch = [{**MESSAGE, "To": f"user{i}@example.com"} for i in range(3)] + [{**MESSAGE, "From": "bad"}]
    first = await post(api, "/email/batch", batch, key="batch-1")
    again = await post(api, "/email/batch", batch, key="batch-1")
    assert first.status_code == 200 and again.content == first.content
    assert [item["ErrorCode"] for item in again.json()] == [0, 0, 0, 300]
    assert await api.count("messages") == 3


async def test_a_refusal_is_recorded_and_replayed_too(api) -> None:  # type: ignore[no-untyped-def]
    bad = {**MESSAGE, "From": ""}
    first = await post(api, "/email", bad, key="bad-1")
    again = await post(api, "/email", bad, key="bad-1")
    assert first.status_code == again.status_code == 422
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["X-PM-ApiErrorCode"] == first.headers["X-PM-ApiErrorCode"] == "300"


async def test_keys_belong_to_a_server(api) -> None:  # type: ignore[no-untyped-def]
    created = await api.client.post("/servers", headers=api.account_headers, json={"Name": "second"})
    other_token = created.json()["ApiTokens"][0]
    first = await post(api, "/email", MESSAGE, key="shared")
    headers = {"X-Postmark-Server-Token": other_token, "Accept": "application/json", "Idempotency-Key": "shared"}
    second = await api.client.post("/email", headers=headers, json=MESSAGE)
    assert first.status_code == second.status_code == 200
    assert first.json()["MessageID"] != second.json()["MessageID"]
    assert await api.count("messages") == 2


async def test_an_invalid_key_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    answer = await post(api, "/email", MESSAGE, key="x" * 300)
    assert answer.status_code == 422 and answer.json()["ErrorCode"] == 1612


class Clockwork(Clock):
    def __init__(self) -> None:
        self.value = 1_700_000_000_000_000

    def micros(self) -> int:
        return self.value


async def test_a_hold_left_by_a_dead_request_is_taken_over_and_keys_expire(store) -> None:  # type: ignore[no-untyped-def]
    clock = Clockwork()
    service = IdempotencyService(store, clock, lifetime=86400, in_flight_timeout=120)
    held = await service.begin(1, "k", "POST", "/email", b"{}")
    assert isinstance(held, IdempotencyKey)
    clock.value += 119_000_000
    with pytest.raises(ApiError) as live:  # a live hold is not taken
        await service.begin(1, "k", "POST", "/email", b"{}")
    assert live.value.error_code == 1611 and live.value.http_status == 409
    clock.value += 2_000_000  # 121 s: the holder died (nothing it did was stored)
    taken = await service.begin(1, "k", "POST", "/email", b"{}")
    assert isinstance(taken, IdempotencyKey)
    await service.finish(taken, 200, b'{"ok":1}')
    replay = await service.begin(1, "k", "POST", "/email", b"{}")
    assert replay == Replay(200, b'{"ok":1}')
    clock.value += 86_401_000_000  # a day later the key is free again
    assert isinstance(await service.begin(1, "k", "POST", "/email", b"{}"), IdempotencyKey)


async def test_a_request_whose_stale_hold_was_taken_over_cannot_store_its_mail_too(api) -> None:  # type: ignore[no-untyped-def]
    """Review finding: after a takeover, both the original request and the retry once stored their mail.
    Now the answer commits only for the request that holds the key, and the mail with it."""
    from posthouse import wire
    from posthouse.server.errors import StoreError

    clock = Clockwork()
    service = IdempotencyService(api.runtime.store, clock, in_flight_timeout=120)
    api.runtime.sending.idempotency = service
    server = await api.runtime.accounts.authenticate_server(api.server_token)
    slow = await service.begin(server.id, "k", "POST", "/email", b"{}")
    clock.value += 121_000_000
    retry = await service.begin(server.id, "k", "POST", "/email", b"{}")
    assert isinstance(slow, IdempotencyKey) and isinstance(retry, IdempotencyKey)
    request = wire.EmailRequest(**{"sender": "app@example.com", "to": "user@example.com", "subject": "s",
                                   "text_body": "t"})
    await api.runtime.sending.send(server, request, idempotency=retry)
    with pytest.raises(StoreError):
        await api.runtime.sending.send(server, request, idempotency=slow)
    assert await api.count("messages") == 1


async def test_housekeeping_deletes_expired_keys_in_batches_and_keeps_live_ones(store) -> None:  # type: ignore[no-untyped-def]
    clock = Clockwork()
    service = IdempotencyService(store, clock, lifetime=86400, in_flight_timeout=120)
    for i in range(7):
        held = await service.begin(1, f"old-{i}", "POST", "/email", b"{}")
        assert isinstance(held, IdempotencyKey)
        await service.finish(held, 200, b"{}")
    clock.value += 86_000_000_000  # later, two keys taken while the first seven are still live
    for i in range(2):
        assert isinstance(await service.begin(1, f"new-{i}", "POST", "/email", b"{}"), IdempotencyKey)
    housekeeper = Housekeeper(store, clock, batch_size=3)
    assert await housekeeper.sweep() == 0
    clock.value += 1_000_000_000  # past the first seven's 24 hours, not the others'
    assert await store.purge_idempotency_keys(clock.micros(), 3) == 3  # one bounded batch
    assert await housekeeper.sweep() == 4  # the rest, in batches of 3 and 1
    rows = await store.query("SELECT key FROM idempotency_keys ORDER BY key")
    assert [r[0] for r in rows] == ["new-0", "new-1"]
