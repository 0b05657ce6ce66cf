"""Webhook events from what happened: the store queues them with the change that caused them (docs/architecture.md §5).

Each function turns facts into a `WebhookEvent` (Postmark's payload, `webhooks.payloads`). A bounce's
payload is built before its row has an id: the id is written into `ID` when the post is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from posthouse.server.domain.statuses import BounceType
from posthouse.server.store.base import BounceRecord, Suppression, WebhookEvent
from posthouse.server.webhooks import payloads
from posthouse.server.webhooks.payloads import SuppressionOrigin, SuppressionReason


def new_event_key() -> str:
    return f"msg_{uuid.uuid4().hex}"


def delivery_event(*, server_id: int, stream: str, message_id: str, recipient: str, tag: str | None,
                   metadata: Mapping[str, Any], details: str, at: int) -> WebhookEvent:
    body = payloads.delivery_payload(payloads.DeliveryFacts(
        message_id=message_id, server_id=server_id, message_stream=stream, recipient=recipient, delivered_at_us=at,
        details=details, tag=tag, metadata=metadata))
    return WebhookEvent(server_id, stream, "Delivery", new_event_key(), body.decode(), at, message_id=message_id)


def bounce_event(bounce: BounceRecord, metadata: Mapping[str, Any]) -> WebhookEvent:
    """A Bounce (or SpamComplaint) event; the variant with `Content` carries the dump."""
    bounce_type = BounceType.from_type_name(bounce.type)
    dump_available = bool(bounce.dump)

    def build(content: str | None) -> str:
        if bounce_type is BounceType.SPAM_COMPLAINT:
            return payloads.spam_complaint_payload(payloads.SpamComplaintFacts(
                id=bounce.id or 0, message_id=bounce.message_id or "", server_id=bounce.server_id,
                message_stream=bounce.stream, email=bounce.email, from_=bounce.sender, bounced_at_us=bounce.bounced_at,
                details=bounce.details, description=bounce.description, subject=bounce.subject,
                dump_available=dump_available, tag=bounce.tag, metadata=metadata, content=content)).decode()
        return payloads.bounce_payload(payloads.BounceFacts(
            id=bounce.id or 0, type=bounce_type, message_id=bounce.message_id or "", server_id=bounce.server_id,
            message_stream=bounce.stream, email=bounce.email, from_=bounce.sender, bounced_at_us=bounce.bounced_at,
            details=bounce.details, description=bounce.description, subject=bounce.subject,
            dump_available=dump_available, inactive=bounce.inactive, can_activate=bounce.can_activate, tag=bounce.tag,
            metadata=metadata, content=content)).decode()

    record_type = "SpamComplaint" if bounce_type is BounceType.SPAM_COMPLAINT else "Bounce"
    return WebhookEvent(bounce.server_id, bounce.stream, record_type, new_event_key(), build(None), bounce.bounced_at,
                        payload_with_content=build(bounce.dump or ""), bounce_id=bounce.id,
                        message_id=bounce.message_id)


def subscription_event(*, server_id: int, stream: str, recipient: str, at: int, origin: SuppressionOrigin,
                       suppress_sending: bool, reason: SuppressionReason | None, message_id: str | None = None,
                       tag: str | None = None, metadata: Mapping[str, Any] | None = None) -> WebhookEvent:
    body = payloads.subscription_change_payload(payloads.SubscriptionChangeFacts(
        message_id=message_id, server_id=server_id, message_stream=stream, recipient=recipient, changed_at_us=at,
        origin=origin, suppress_sending=suppress_sending, suppression_reason=reason, tag=tag,
        metadata=metadata or {}))
    return WebhookEvent(server_id, stream, "SubscriptionChange", new_event_key(), body.decode(), at,
                        message_id=message_id)


def suppression_reason_for(bounce_type: BounceType) -> SuppressionReason:
    if bounce_type is BounceType.SPAM_COMPLAINT:
        return SuppressionReason.SPAM_COMPLAINT
    return SuppressionReason.HARD_BOUNCE


def suppression_for(bounce: BounceRecord, tag: str | None, metadata: dict[str, str]) -> Suppression | None:
    """A hard bounce or spam complaint suppresses its address in its stream (docs/postmark-api.md §2.7),
    announced by a SubscriptionChange webhook and message event if the address was not suppressed yet."""
    bounce_type = BounceType.from_type_name(bounce.type)
    if not bounce_type.deactivates:
        return None
    reason = suppression_reason_for(bounce_type)
    email = bounce.email.lower()
    return Suppression(
        server_id=bounce.server_id, stream=bounce.stream, email=email, reason=reason.value,
        origin=SuppressionOrigin.RECIPIENT.value, created_at=bounce.bounced_at,
        event=subscription_event(
            server_id=bounce.server_id, stream=bounce.stream, recipient=bounce.email, at=bounce.bounced_at,
            origin=SuppressionOrigin.RECIPIENT, suppress_sending=True, reason=reason, message_id=bounce.message_id,
            tag=tag, metadata=metadata),
        message_event=(bounce.message_id, bounce.email, {
            "Origin": SuppressionOrigin.RECIPIENT.value, "SuppressSending": True,
            "SuppressionReason": reason.value}) if bounce.message_id else None)
