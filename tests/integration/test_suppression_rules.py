"""Suppression rules the store enforces: a spam complaint outranks a bounce and is never lifted."""

from __future__ import annotations

from posthouse.server.services.notifications import subscription_event
from posthouse.server.store.base import BounceRecord, Suppression
from posthouse.server.webhooks.payloads import SuppressionOrigin


def bounce(server_id: int, kind: str, code: int, at: int) -> BounceRecord:
    return BounceRecord(server_id=server_id, message_id=None, stream="outbound", type=kind, type_code=code,
                        email="reader@example.com", sender="app@example.com", subject="s", tag=None,
                        description="d", details="x", bounced_at=at, inactive=True,
                        can_activate=kind == "HardBounce", dump="")


async def test_a_complaint_after_a_hard_bounce_takes_over_and_cannot_be_deleted(api) -> None:  # type: ignore[no-untyped-def]
    store = api.runtime.store
    server = await store.get_server_by_name("default")
    for kind, code, at in (("HardBounce", 1, 1), ("SpamComplaint", 100001, 2), ("HardBounce", 1, 3)):
        suppression = Suppression(server.id, "outbound", "reader@example.com",
                                  "SpamComplaint" if kind == "SpamComplaint" else "HardBounce", "Recipient", at)
        await store.record_bounces([(bounce(server.id, kind, code, at), None, [], suppression)])
    (row,) = await store.list_suppressions(server.id, "outbound")
    assert (row.email, row.reason) == ("reader@example.com", "SpamComplaint")
    answer = await api.client.post("/message-streams/outbound/suppressions/delete", headers=api.server_headers,
                                   json={"Suppressions": [{"EmailAddress": "reader@example.com"}]})
    assert answer.status_code == 200 and answer.json()["Suppressions"][0]["Status"] == "Failed"
    # Not even the store lets it go, whatever the service checked before.
    await store.remove_suppressions(server.id, "outbound", ["reader@example.com"], [subscription_event(
        server_id=server.id, stream="outbound", recipient="reader@example.com", at=4,
        origin=SuppressionOrigin.CUSTOMER, suppress_sending=False, reason=None)])
    assert [s.reason for s in await store.list_suppressions(server.id, "outbound")] == ["SpamComplaint"]
