"""Bounces, suppressions and webhooks through the SDK, against the real server process, async and sync.

Bounces come from the sandbox's bounce testing: mail to `HardBounce@bounce-testing.postmarkapp.com` bounces
on delivery, which records a bounce and suppresses the address. Webhooks post to a receiver on loopback.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

import posthouse
from sdk.sdk_support import Tenant
from support import async_wait_for
from webhook_receiver import WebhookReceiver

SENDER = "app@example.com"
GONE = "HardBounce@bounce-testing.postmarkapp.com"


async def test_a_hard_bounce_is_listed_read_counted_and_reactivated(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        sent = await flavour(
            client.outbound.send(posthouse.Email(sender=SENDER, to=GONE, subject="Bye", text_body="x", tag="gone"))
        )

        async def bounced() -> posthouse.BounceList | None:
            page = await flavour(client.bounces.list())
            return page if page.total_count else None

        page = await async_wait_for(bounced, timeout=15)
        assert isinstance(page, posthouse.BounceList)
        [bounce] = page.bounces
        assert isinstance(bounce, posthouse.Bounce)
        assert (bounce.type, bounce.type_code, bounce.email, bounce.message_id) == (
            "HardBounce", 1, GONE, sent.message_id
        )
        assert (bounce.tag, bounce.message_stream, bounce.subject) == ("gone", "outbound", "Bye")
        assert bounce.inactive is True and bounce.can_activate is True

        since = datetime.now(UTC) - timedelta(hours=1)
        for matching in (
            {"type": "HardBounce", "inactive": True, "tag": "gone"},
            {"email_filter": "hardbounce@", "message_stream": "outbound", "from_date": since},
            {"message_id": sent.message_id, "to_date": datetime.now(UTC) + timedelta(hours=1)},
        ):
            assert [b.id for b in (await flavour(client.bounces.list(**matching))).bounces] == [bounce.id], matching
        for missing in ({"type": "SoftBounce"}, {"inactive": False}, {"tag": "other"}, {"to_date": "2000-01-01"}):
            assert (await flavour(client.bounces.list(**missing))).total_count == 0, missing
        assert (await flavour(client.bounces.list(count=1, offset=1))).bounces == []

        one = await flavour(client.bounces.get(bounce.id))
        assert one.id == bounce.id and isinstance(one.content, str)
        dump = await flavour(client.bounces.dump(bounce.id))
        assert isinstance(dump, str) and dump == one.content

        assert await flavour(client.bounces.tags()) == ["gone"]
        stats = await flavour(client.bounces.delivery_stats())
        assert isinstance(stats, posthouse.DeliveryStats)
        assert stats.inactive_mails == 1
        assert [(row.type, row.count) for row in stats.bounces] == [("All", 1), ("HardBounce", 1)]

        suppressed = await flavour(client.suppressions.dump("outbound"))
        assert [(s.email_address, s.suppression_reason, s.origin) for s in suppressed.suppressions] == [
            (GONE.lower(), "HardBounce", "Recipient")
        ]
        with pytest.raises(posthouse.InactiveRecipientsError) as refused:
            await flavour(client.outbound.send(posthouse.Email(sender=SENDER, to=GONE, text_body="again")))
        assert refused.value.inactive_recipients == [GONE.lower()]

        activated = await flavour(client.bounces.activate(bounce.id))
        assert isinstance(activated, posthouse.BounceActivation)
        assert activated.message == "OK" and activated.bounce.inactive is False
        assert (await flavour(client.suppressions.dump("outbound"))).suppressions == []
        assert (await flavour(client.bounces.delivery_stats())).inactive_mails == 0

        with pytest.raises(posthouse.InvalidRequestError) as missing_bounce:
            await flavour(client.bounces.get(999_999_999))
        assert missing_bounce.value.error_code == 1001
    finally:
        await flavour.close(client)


async def test_suppressions_are_added_filtered_and_lifted(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        added = await flavour(client.suppressions.create("outbound", ["Ann@Example.com", "not an address"]))
        assert isinstance(added, posthouse.SuppressionResults)
        assert [(r.email_address, r.status) for r in added.suppressions] == [
            ("Ann@Example.com", "Suppressed"),
            ("not an address", "Failed"),
        ]
        await flavour(client.suppressions.create("outbound", ["bob@example.com"]))

        everything = await flavour(client.suppressions.dump("outbound"))
        assert isinstance(everything, posthouse.SuppressionDump)
        assert {s.email_address for s in everything.suppressions} == {"ann@example.com", "bob@example.com"}
        assert {(s.suppression_reason, s.origin) for s in everything.suppressions} == {
            ("ManualSuppression", "Customer")
        }
        only_ann = await flavour(client.suppressions.dump("outbound", email_address="ann@example.com"))
        assert [s.email_address for s in only_ann.suppressions] == ["ann@example.com"]
        manual = await flavour(
            client.suppressions.dump(
                "outbound",
                suppression_reason="ManualSuppression",
                origin="Customer",
                from_date=datetime.now(UTC).date() - timedelta(days=1),
                to_date=datetime.now(UTC).date() + timedelta(days=1),
            )
        )
        assert len(manual.suppressions) == 2
        assert (await flavour(client.suppressions.dump("outbound", suppression_reason="HardBounce"))).suppressions == []
        assert (await flavour(client.suppressions.dump("broadcast"))).suppressions == []  # per stream

        with pytest.raises(posthouse.InactiveRecipientsError):
            await flavour(client.outbound.send(posthouse.Email(sender=SENDER, to="ann@example.com", text_body="x")))

        lifted = await flavour(client.suppressions.delete("outbound", ["ann@example.com"]))
        assert [(r.email_address, r.status) for r in lifted.suppressions] == [("ann@example.com", "Deleted")]
        left = await flavour(client.suppressions.dump("outbound"))
        assert [s.email_address for s in left.suppressions] == ["bob@example.com"]
        sent = await flavour(client.outbound.send(posthouse.Email(sender=SENDER, to="ann@example.com", text_body="x")))
        assert sent.error_code == 0

        with pytest.raises(posthouse.InvalidRequestError) as unknown:
            await flavour(client.suppressions.dump("no-such-stream"))
        assert unknown.value.error_code == 1226
        with pytest.raises(TypeError):
            await flavour(client.suppressions.create("outbound", "ann@example.com"))
    finally:
        await flavour.close(client)


async def test_webhooks_post_signed_deliveries_that_can_be_redelivered(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        with WebhookReceiver() as receiver:
            created = await flavour(
                client.webhooks.create(
                    posthouse.WebhookRequest(
                        url=receiver.url,
                        triggers=posthouse.WebhookTriggers(delivery=posthouse.EnabledTrigger(enabled=True)),
                    )
                )
            )
            assert isinstance(created, posthouse.Webhook)
            assert created.url == receiver.url and created.message_stream == "outbound"
            assert created.secret.startswith("whsec_")
            assert created.triggers.delivery == posthouse.EnabledTrigger(enabled=True)
            assert created.triggers.bounce == posthouse.ContentTrigger(enabled=False, include_content=False)

            listed = await flavour(client.webhooks.list())
            assert isinstance(listed, posthouse.WebhookList)
            assert [w.id for w in listed.webhooks] == [created.id]
            assert (await flavour(client.webhooks.list("outbound"))).webhooks == listed.webhooks
            assert (await flavour(client.webhooks.list("broadcast"))).webhooks == []
            assert await flavour(client.webhooks.get(created.id)) == created

            edited = await flavour(
                client.webhooks.edit(
                    created.id,
                    posthouse.WebhookRequest(
                        http_headers=[posthouse.Header(name="X-Env", value="test")],
                        triggers=posthouse.WebhookTriggers(
                            open=posthouse.OpenTrigger(enabled=True, post_first_open_only=True)
                        ),
                    ),
                )
            )
            assert edited.http_headers == [posthouse.Header(name="X-Env", value="test")]
            assert edited.triggers.open == posthouse.OpenTrigger(enabled=True, post_first_open_only=True)
            assert edited.triggers.delivery == posthouse.EnabledTrigger(enabled=True)  # left as it was
            assert (edited.url, edited.secret) == (created.url, created.secret)

            sent = await flavour(
                client.outbound.send(posthouse.Email(sender=SENDER, to="ann@example.com", text_body="x"))
            )
            (post,) = receiver.wait(lambda: receiver.of_type("Delivery"))
            # What a receiver does: check the Standard Webhooks signature with the webhook's secret.
            payload = Verifier(created.secret).verify(post.body, post.headers)
            assert payload["MessageID"] == sent.message_id and payload["Recipient"] == "ann@example.com"
            assert post.headers["x-env"] == "test"

            async def delivered() -> posthouse.WebhookDeliveryList | None:
                log = await flavour(client.webhooks.deliveries(created.id))
                return log if log.total_count and log.deliveries[0].state == "delivered" else None

            log = await async_wait_for(delivered, timeout=15)
            assert isinstance(log, posthouse.WebhookDeliveryList)
            [delivery] = log.deliveries
            assert isinstance(delivery, posthouse.WebhookDelivery)
            assert delivery.record_type == "Delivery" and delivery.attempts == 1
            [attempt] = delivery.history
            assert isinstance(attempt, posthouse.WebhookAttempt)
            assert (attempt.status_code, attempt.response_excerpt) == (200, "")  # nothing of a 2xx answer is kept
            assert (await flavour(client.webhooks.deliveries(created.id, count=1, offset=1))).deliveries == []

            assert await flavour(client.webhooks.redeliver(created.id, delivery.id)) is None
            again = receiver.wait(lambda: len(receiver.of_type("Delivery")) == 2 and receiver.of_type("Delivery"))
            assert again[1].headers["webhook-id"] == post.headers["webhook-id"]
            assert Verifier(created.secret).verify(again[1].body, again[1].headers)["MessageID"] == sent.message_id

            async def attempted_twice() -> bool:
                # A redelivery starts a fresh retry schedule (`attempts` counts from 0); `history` keeps both.
                [latest] = (await flavour(client.webhooks.deliveries(created.id))).deliveries
                return len(latest.history) == 2 and latest.state == "delivered"

            await async_wait_for(attempted_twice, timeout=15)

            with pytest.raises(posthouse.InvalidRequestError) as no_delivery:
                await flavour(client.webhooks.redeliver(created.id, 999_999_999))
            assert no_delivery.value.error_code == 1352

            assert await flavour(client.webhooks.delete(created.id)) is None
            with pytest.raises(posthouse.InvalidRequestError) as gone:
                await flavour(client.webhooks.get(created.id))
            assert gone.value.error_code == 1352
            assert (await flavour(client.webhooks.list())).webhooks == []
    finally:
        await flavour.close(client)
