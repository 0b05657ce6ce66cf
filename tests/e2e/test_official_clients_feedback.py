"""The official Postmark clients read bounces, manage suppressions and webhooks on the real server process.

Bounces come from the sandbox's bounce testing (docs/postmark-api.md §2.7): mail to
`<Type>@bounce-testing.postmarkapp.com` bounces with that type, recorded by the running worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import postmark
import postmark.sync
import pytest
from postmark.models.bounces.enums import BounceType
from postmark.models.suppressions.enums import SuppressionOrigin, SuppressionReason
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError

from support import ServerProcess, wait_for

SENDER = "app@example.com"
HARD = "HardBounce@bounce-testing.postmarkapp.com"
SOFT = "SoftBounce@bounce-testing.postmarkapp.com"
FAST = {"POSTHOUSE_RETRY_SCHEDULE": "300ms", "POSTHOUSE_POLL_INTERVAL": "200ms"}


@pytest.fixture
def server(tmp_path, database_url: str) -> Iterator[ServerProcess]:  # type: ignore[no-untyped-def]
    """Posthouse with sandbox delivery, so bounce testing addresses bounce."""
    with ServerProcess(tmp_path / "data", database_url, env=FAST) as process:
        yield process


def bounced(server: ServerProcess, count: int) -> bool:
    with server.client() as client:
        return bool(client.get("/bounces", params={"count": 10, "offset": 0}).json()["TotalCount"] == count)


def send_bounces(server: ServerProcess) -> tuple[str, str]:
    """A hard and a soft bounce; their MessageIDs."""
    with server.client() as client:
        hard = client.post(
            "/email", json={"From": SENDER, "To": HARD, "Subject": "Welcome", "TextBody": "Hi", "Tag": "welcome"}
        ).json()["MessageID"]
        soft = client.post("/email", json={"From": SENDER, "To": SOFT, "Subject": "News", "TextBody": "News"}).json()[
            "MessageID"
        ]
    wait_for(lambda: bounced(server, 2), timeout=20)
    return hard, soft


def test_postmark_python_reads_and_activates_bounces(server: ServerProcess) -> None:
    hard_id, soft_id = send_bounces(server)
    now = datetime.now(UTC).replace(tzinfo=None)
    with postmark.sync.ServerClient(server.server_token, base_url=server.base_url, retries=0) as client:
        page = client.bounces.list(count=10, offset=0)
        assert page.total == 2
        by_email = {b.email: b for b in page.items}
        hard, soft = by_email[HARD], by_email[SOFT]
        assert (hard.type, hard.type_code, hard.name) == (BounceType.HARD_BOUNCE, 1, "Hard bounce")
        assert (hard.message_id, hard.tag, hard.message_stream, hard.sender) == (hard_id, "welcome", "outbound", SENDER)
        assert (hard.inactive, hard.can_activate, hard.subject) == (True, True, "Welcome")
        assert (soft.type, soft.message_id, soft.inactive, soft.can_activate) == (
            BounceType.SOFT_BOUNCE,
            soft_id,
            False,
            False,
        )
        assert abs(hard.bounced_at - datetime.now(UTC)) < timedelta(minutes=1)

        def ids(**filters: object) -> list[int]:
            return [b.id for b in client.bounces.list(count=10, offset=0, **filters).items]

        assert ids(type=BounceType.HARD_BOUNCE) == [hard.id]
        assert ids(inactive=True) == [hard.id]
        assert ids(inactive=False) == [soft.id]
        assert ids(email_filter="softbounce@") == [soft.id]
        assert ids(tag="welcome") == [hard.id]
        assert ids(message_id=soft_id) == [soft.id]
        assert sorted(ids(message_stream="outbound")) == sorted([hard.id, soft.id])
        assert ids(message_stream="broadcast") == []
        assert sorted(ids(from_date=now - timedelta(hours=1), to_date=now + timedelta(hours=1))) == sorted(
            [hard.id, soft.id]
        )
        assert ids(from_date=now + timedelta(hours=1)) == []

        found = client.bounces.get(hard.id)
        # A simulated bounce's dump is the DSN the sandbox wrote for it (issue 11).
        assert found.id == hard.id and found.email == HARD and "report-type=delivery-status" in found.content
        assert client.bounces.get_dump(hard.id).body == found.content

        stats = client.bounces.get_delivery_stats()
        assert stats.inactive_mails == 1
        assert [(r.type, r.type_code, r.name, r.count) for r in stats.bounces] == [
            ("All", 0, "All", 2),
            ("HardBounce", 1, "Hard bounce", 1),
            ("SoftBounce", 4096, "Soft bounce", 1),
        ]

        activated = client.bounces.activate(hard.id)
        assert activated.message == "OK"
        assert (activated.bounce.id, activated.bounce.inactive, activated.bounce.can_activate) == (hard.id, False, True)
        assert client.bounces.get_delivery_stats().inactive_mails == 0
        with pytest.raises(postmark.PostmarkAPIException) as refused:
            client.bounces.activate(soft.id)
        assert refused.value.error_code == 1003
        with pytest.raises(postmark.PostmarkAPIException) as missing:
            client.bounces.get(999999)
        assert missing.value.error_code == 1001


def test_postmark_python_manages_suppressions(server: ServerProcess) -> None:
    with postmark.sync.ServerClient(server.server_token, base_url=server.base_url, retries=0) as client:
        results = client.suppressions.create("outbound", ["ann@example.com", "not-an-address"])
        assert [(r.email_address, r.status, r.message) for r in results] == [
            ("ann@example.com", "Suppressed", None),
            ("not-an-address", "Failed", "An invalid email address was provided."),
        ]
        with pytest.raises(postmark.exceptions.InactiveRecipientException):
            client.outbound.send({"sender": SENDER, "to": "ann@example.com", "subject": "Hi", "text_body": "Hi"})

        (entry,) = client.suppressions.dump("outbound")
        assert entry.email_address == "ann@example.com"
        assert (entry.suppression_reason, entry.origin) == (
            SuppressionReason.MANUAL_SUPPRESSION,
            SuppressionOrigin.CUSTOMER,
        )
        assert abs(entry.created_at - datetime.now(UTC)) < timedelta(minutes=1)
        today = datetime.now(UTC).date()
        assert (
            len(
                client.suppressions.dump(
                    "outbound",
                    suppression_reason=SuppressionReason.MANUAL_SUPPRESSION,
                    origin=SuppressionOrigin.CUSTOMER,
                    from_date=today,
                    to_date=today,
                    email_address="ann@example.com",
                )
            )
            == 1
        )
        assert client.suppressions.dump("outbound", suppression_reason=SuppressionReason.HARD_BOUNCE) == []
        assert client.suppressions.dump("broadcast") == []

        deleted = client.suppressions.delete("outbound", ["ann@example.com"])
        assert [(r.email_address, r.status) for r in deleted] == [("ann@example.com", "Deleted")]
        assert client.suppressions.dump("outbound") == []
        sent = client.outbound.send({"sender": SENDER, "to": "ann@example.com", "subject": "Hi", "text_body": "Hi"})
        assert sent.error_code == 0
        with pytest.raises(postmark.PostmarkAPIException) as unknown:
            client.suppressions.dump("nope")
        assert unknown.value.error_code == 1226


def test_postmark_python_manages_webhooks(server: ServerProcess) -> None:
    triggers = {
        "Open": {"Enabled": True, "PostFirstOpenOnly": True},
        "Bounce": {"Enabled": True, "IncludeContent": True},
    }
    with postmark.sync.ServerClient(server.server_token, base_url=server.base_url, retries=0) as client:
        hook = client.webhooks.create(
            url="https://hooks.example.com/postmark",
            message_stream="outbound",
            http_auth={"Username": "user", "Password": "pass"},
            http_headers=[{"Name": "X-Token", "Value": "abc"}],
            triggers=triggers,
        )
        assert (hook.url, hook.message_stream) == ("https://hooks.example.com/postmark", "outbound")
        assert hook.http_auth is not None and (hook.http_auth.username, hook.http_auth.password) == ("user", "pass")
        assert [(h.name, h.value) for h in hook.http_headers or []] == [("X-Token", "abc")]
        assert (hook.triggers.open.enabled, hook.triggers.open.post_first_open_only) == (True, True)
        assert (hook.triggers.bounce.enabled, hook.triggers.bounce.include_content) == (True, True)
        assert not hook.triggers.delivery.enabled and not hook.triggers.subscription_change.enabled
        bare = client.webhooks.create(url="https://hooks.example.com/other", message_stream="broadcast")
        assert bare.http_auth is None and bare.http_headers == []

        assert [w.id for w in client.webhooks.list()] == [hook.id, bare.id]
        assert [w.id for w in client.webhooks.list(message_stream="broadcast")] == [bare.id]
        assert client.webhooks.get(hook.id) == hook

        edited = client.webhooks.edit(
            hook.id, url="https://hooks.example.com/v2", triggers={"Delivery": {"Enabled": True}}
        )
        assert edited.url == "https://hooks.example.com/v2"
        assert edited.triggers.delivery.enabled and edited.triggers.open.enabled  # the rest is kept
        assert edited.http_auth == hook.http_auth

        removed = client.webhooks.delete(hook.id)
        assert (removed.error_code, removed.message) == (0, f"Webhook {hook.id} removed.")
        assert [w.id for w in client.webhooks.list()] == [bare.id]
        with pytest.raises(postmark.PostmarkAPIException) as missing:
            client.webhooks.get(hook.id)
        assert missing.value.error_code == 1352
        with pytest.raises(postmark.PostmarkAPIException) as private:
            client.webhooks.create(url="http://169.254.169.254/latest/meta-data/")
        assert private.value.error_code == 1354


def test_postmarker_reads_and_activates_bounces(server: ServerProcess) -> None:
    hard_id, _ = send_bounces(server)
    pm = PostmarkClient(server_token=server.server_token, root_api_url=server.base_url + "/")
    everything = pm.bounces.all(count=10, offset=0)
    assert sorted(b.Email for b in everything) == [HARD, SOFT]
    (hard,) = pm.bounces.all(count=10, offset=0, type="HardBounce", inactive=True)
    assert (hard.Email, hard.MessageID, hard.Inactive, hard.CanActivate) == (HARD, hard_id, True, True)
    (soft,) = pm.bounces.all(count=10, offset=0, inactive=False, emailFilter="softbounce")
    assert soft.Type == "SoftBounce"
    found = pm.bounces.get(hard.ID)
    assert (found.ID, found.Type, found.TypeCode, found.DumpAvailable) == (hard.ID, "HardBounce", 1, True)
    # A simulated bounce's dump is the DSN the sandbox wrote for it (issue 11).
    assert "report-type=delivery-status" in found.Content
    assert found.dump == found.Content
    assert pm.bounces.get_dump(hard.ID) == found.Content
    assert pm.bounces.tags == ["welcome"]
    stats = pm.bounces.deliverystats
    assert stats["InactiveMails"] == 1
    assert [(r["Type"], r["Count"]) for r in stats["Bounces"]] == [("All", 2), ("HardBounce", 1), ("SoftBounce", 1)]
    assert found.activate() == "OK"
    assert found.Inactive is False
    assert pm.bounces.get(hard.ID).Inactive is False
    with pytest.raises(ClientError) as refused:
        pm.bounces.activate(soft.ID)
    assert refused.value.error_code == 1003
