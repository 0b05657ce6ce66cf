"""Bulk sending, cancelling and rescheduling, and one `Idempotency-Key` per send on every send call: against the
real server process (async and sync), and on the wire through a mock transport."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import posthouse
from posthouse.client.retries import RetryPolicy
from sdk.sdk_support import Tenant
from support import async_wait_for

SENDER = "app@example.com"


async def test_a_bulk_send_completes_and_is_listed_page_by_page(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        request = posthouse.BulkRequest(
            sender=SENDER,
            subject="Hi {{name}}",
            text_body="Hello {{name}}",
            tag="news",
            message_stream="broadcast",
            messages=[
                posthouse.BulkMessage(to=f"reader{i}@example.com", template_model={"name": f"R{i}"}) for i in range(20)
            ],
        )
        accepted = await flavour(client.bulk.send(request, idempotency_key=f"bulk-{flavour}"))
        assert isinstance(accepted, posthouse.BulkAccepted)
        assert accepted.status == "Accepted" and accepted.id == accepted.id_upper
        replayed = await flavour(client.bulk.send(request, idempotency_key=f"bulk-{flavour}"))
        assert replayed.id == accepted.id  # the same key: the same bulk send, not a second one

        async def completed() -> posthouse.BulkStatus | None:
            status = await flavour(client.bulk.get(accepted.id))
            return status if status.status == "Completed" else None

        status = await async_wait_for(completed, timeout=20)
        assert isinstance(status, posthouse.BulkStatus)
        assert (status.total_messages, status.released_count, status.failed_count) == (20, 20, 0)
        assert status.percentage_completed == 100 and status.subject == "Hi {{name}}"
        sent = await flavour(client.outbound.list(tag="news", message_stream="broadcast", count=50))
        assert sent.total_count == 20
        assert {m.subject for m in sent.messages} == {f"Hi R{i}" for i in range(20)}

        later = await flavour(
            client.bulk.send(
                posthouse.BulkRequest(
                    sender=SENDER,
                    subject="Later",
                    text_body="x",
                    message_stream="broadcast",
                    messages=[posthouse.BulkMessage(to="late@example.com")],
                ),
                send_at=datetime.now(UTC) + timedelta(hours=1),
            )
        )
        first = await flavour(client.bulk.list(1))
        assert isinstance(first, posthouse.BulkList)
        assert [b.id for b in first.requests] == [later.id] and first.pagination_key
        second = await flavour(client.bulk.list(1, pagination_key=first.pagination_key))
        assert [b.id for b in second.requests] == [accepted.id] and second.pagination_key is None
        assert [b.id for b in (await flavour(client.bulk.list())).requests] == [later.id, accepted.id]

        with pytest.raises(posthouse.InvalidRequestError) as missing:
            await flavour(client.bulk.get("00000000-0000-0000-0000-000000000000"))
        assert missing.value.error_code == 12
    finally:
        await flavour.close(client)


async def test_a_scheduled_message_is_rescheduled_and_cancelled(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        in_an_hour = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        sent = await flavour(
            client.outbound.send(
                posthouse.Email(sender=SENDER, to="ann@example.com", subject="Later", text_body="x"), send_at=in_an_hour
            )
        )
        assert (await flavour(client.outbound.get(sent.message_id))).status == "Scheduled"

        moved = await flavour(client.outbound.reschedule(sent.message_id, in_an_hour + timedelta(hours=1)))
        assert isinstance(moved, posthouse.ScheduleChange)
        assert (moved.message_id, moved.status, moved.error_code) == (sent.message_id, "Scheduled", 0)
        assert moved.send_at is not None
        assert datetime.fromisoformat(moved.send_at) == in_an_hour + timedelta(hours=1)
        as_text = (in_an_hour + timedelta(hours=2)).isoformat()
        again = await flavour(client.outbound.reschedule(sent.message_id, as_text))
        assert datetime.fromisoformat(again.send_at or "") == in_an_hour + timedelta(hours=2)
        with pytest.raises(ValueError, match="time zone"):
            await flavour(client.outbound.reschedule(sent.message_id, datetime(2030, 1, 1, 9, 30)))

        cancelled = await flavour(client.outbound.cancel(sent.message_id))
        assert (cancelled.status, cancelled.cancelled, cancelled.released) == ("Cancelled", ["ann@example.com"], [])
        assert (await flavour(client.outbound.get(sent.message_id))).status == "Failed"
        with pytest.raises(posthouse.InvalidRequestError) as twice:
            await flavour(client.outbound.cancel(sent.message_id))
        assert twice.value.error_code == 1602
        with pytest.raises(posthouse.InvalidRequestError) as too_late:
            await flavour(client.outbound.reschedule(sent.message_id, in_an_hour))
        assert too_late.value.error_code == 1601
    finally:
        await flavour.close(client)


async def test_the_same_idempotency_key_gives_the_same_message(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        email = posthouse.Email(sender=SENDER, to="ann@example.com", subject="Once", text_body="x")
        first = await flavour(client.outbound.send(email, idempotency_key="order-7"))
        second = await flavour(client.outbound.send(email, idempotency_key="order-7"))
        assert second.message_id == first.message_id
        batch = [email, posthouse.Email(sender=SENDER, to="bob@example.com", subject="Once", text_body="x")]
        first_batch = await flavour(client.outbound.send_batch(batch, idempotency_key="orders-8"))
        second_batch = await flavour(client.outbound.send_batch(batch, idempotency_key="orders-8"))
        assert [r.message_id for r in second_batch] == [r.message_id for r in first_batch]
        other = await flavour(client.outbound.send(email))  # no key given: a fresh one, a new message
        assert other.message_id != first.message_id
        assert (await flavour(client.outbound.list())).total_count == 4
    finally:
        await flavour.close(client)


# -- on the wire ---------------------------------------------------------------------------------------------

SEND_ANSWER = {"To": "a@x.com", "SubmittedAt": "now", "MessageID": "m-1", "ErrorCode": 0, "Message": "OK"}
BULK_ANSWER = {"Id": "b-1", "ID": "b-1", "Status": "Accepted", "SubmittedAt": "now"}
TEMPLATED = posthouse.TemplateEmail(sender=SENDER, to="a@x.com", template_alias="welcome", template_model={"n": 1})
BULK = posthouse.BulkRequest(sender=SENDER, text_body="x", messages=[posthouse.BulkMessage(to="a@x.com")])
AT = datetime(2030, 5, 1, 9, 30, tzinfo=UTC)


def failing_once(seen: list[httpx.Request]) -> httpx.MockTransport:
    """Answers every request's first attempt with 503, the second with the answer its path expects."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) % 2:
            return httpx.Response(503, json={"ErrorCode": 100, "Message": "Maintenance"})
        if request.url.path == "/email/bulk":
            return httpx.Response(200, json=BULK_ANSWER)
        if request.url.path.endswith("batchWithTemplates"):
            return httpx.Response(200, json=[SEND_ANSWER])
        if request.url.path.endswith(("/schedule", "/cancel")):
            return httpx.Response(200, json={"MessageID": "m-1", "Status": "Scheduled", "SendAt": "2030-05-01"})
        return httpx.Response(200, json=SEND_ANSWER)

    return httpx.MockTransport(answer)


def test_every_new_send_keeps_one_idempotency_key_across_its_retries() -> None:
    seen: list[httpx.Request] = []
    with posthouse.sync.ServerClient(
        "t", base_url="http://h.test", transport=failing_once(seen), retries=RetryPolicy(2, 0.001, 0.002)
    ) as client:
        client.outbound.send_with_template(TEMPLATED, idempotency_key="k-1", send_at=AT)
        client.outbound.send_batch_with_templates([TEMPLATED], idempotency_key="k-2", send_at="2030-05-01T09:30:00Z")
        client.bulk.send(BULK, idempotency_key="k-3", send_at=AT)
        client.outbound.send_with_template(TEMPLATED)
        client.bulk.send(BULK)
        with pytest.raises(ValueError, match="time zone"):
            client.bulk.send(BULK, send_at=datetime(2030, 5, 1, 9, 30))
    paths = ["/email/withTemplate", "/email/batchWithTemplates", "/email/bulk", "/email/withTemplate", "/email/bulk"]
    assert [r.url.path for r in seen] == [path for path in paths for _ in (1, 2)]
    keys = [r.headers["Idempotency-Key"] for r in seen]
    assert keys[:6] == ["k-1", "k-1", "k-2", "k-2", "k-3", "k-3"]
    assert keys[6] == keys[7] and keys[8] == keys[9] and len({keys[6], keys[8]}) == 2  # a uuid4 per send
    assert len(keys[6]) == 36
    bodies = [json.loads(r.read()) for r in seen[::2]]
    assert bodies[0]["SendAt"] == "2030-05-01T09:30:00+00:00" and bodies[0]["TemplateAlias"] == "welcome"
    assert bodies[1] == {
        "Messages": [
            {
                "From": SENDER,
                "To": "a@x.com",
                "SendAt": "2030-05-01T09:30:00Z",
                "TemplateAlias": "welcome",
                "TemplateModel": {"n": 1},
            }
        ]
    }
    assert bodies[2]["SendAt"] == "2030-05-01T09:30:00+00:00" and bodies[2]["Messages"] == [{"To": "a@x.com"}]
    assert "SendAt" not in bodies[3] and "SendAt" not in bodies[4]


def test_cancel_is_not_retried_once_it_may_have_arrived_and_reschedule_is() -> None:
    seen: list[httpx.Request] = []
    with posthouse.sync.ServerClient(
        "t", base_url="http://h.test", transport=failing_once(seen), retries=RetryPolicy(2, 0.001, 0.002)
    ) as client:
        with pytest.raises(posthouse.ServerError):
            client.outbound.cancel("m-1")  # a retry could meet its own cancellation (1602)
        seen.clear()
        changed = client.outbound.reschedule("m-1", AT)
    assert changed.status == "Scheduled"
    assert [(r.method, r.url.path) for r in seen] == [("PUT", "/messages/outbound/m-1/schedule")] * 2
    assert json.loads(seen[0].read()) == {"SendAt": "2030-05-01T09:30:00+00:00"}
    assert "Idempotency-Key" not in seen[0].headers
