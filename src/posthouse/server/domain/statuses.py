"""Closed vocabularies: delivery states, event types, message statuses and Postmark's bounce types."""

from __future__ import annotations

from enum import Enum, StrEnum


class DeliveryState(StrEnum):
    """The state of one (message, recipient) row in the queue (docs/architecture.md §3)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENDING = "sending"  # leased by a worker; claimable again once the lease expires
    DEFERRED = "deferred"  # a transient failure; due again at next_attempt_at
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"


PENDING_STATES = (DeliveryState.QUEUED, DeliveryState.DEFERRED, DeliveryState.SENDING)


class EventType(StrEnum):
    """What happened to a message for one recipient; Postmark's `MessageEvents[].Type` names."""

    QUEUED = "Queued"  # kept for history; not shown in Postmark's MessageEvents (the SDK rejects it)
    DELIVERED = "Delivered"
    TRANSIENT = "Transient"
    BOUNCED = "Bounced"
    OPENED = "Opened"
    LINK_CLICKED = "LinkClicked"
    SUBSCRIPTION_CHANGED = "SubscriptionChanged"


POSTMARK_EVENT_TYPES = frozenset(t for t in EventType if t is not EventType.QUEUED)


class MessageStatus(StrEnum):
    """Postmark's outbound message `Status`: Queued until every recipient is finished, then Sent."""

    QUEUED = "Queued"
    SENT = "Sent"
    SCHEDULED = "Scheduled"  # Posthouse: queued with a SendAt still ahead (shown, not stored)
    CANCELLED = "Cancelled"  # Posthouse: cancelled before release


class BounceType(Enum):
    """Postmark's bounce types: (Type, TypeCode, Name) — docs/postmark-api.md §5."""

    HARD_BOUNCE = ("HardBounce", 1, "Hard bounce")
    TRANSIENT = ("Transient", 2, "Message delayed")
    UNSUBSCRIBE = ("Unsubscribe", 16, "Unsubscribe request")
    SUBSCRIBE = ("Subscribe", 32, "Subscribe request")
    AUTO_RESPONDER = ("AutoResponder", 64, "Auto responder")
    ADDRESS_CHANGE = ("AddressChange", 128, "Address change")
    DNS_ERROR = ("DnsError", 256, "DNS error")
    SPAM_NOTIFICATION = ("SpamNotification", 512, "Spam notification")
    OPEN_RELAY_TEST = ("OpenRelayTest", 1024, "Open relay test")
    UNKNOWN = ("Unknown", 2048, "Unknown")
    SOFT_BOUNCE = ("SoftBounce", 4096, "Soft bounce")
    VIRUS_NOTIFICATION = ("VirusNotification", 8192, "Virus notification")
    CHALLENGE_VERIFICATION = ("ChallengeVerification", 16384, "Spam challenge verification")
    BAD_EMAIL_ADDRESS = ("BadEmailAddress", 100000, "Invalid email address")
    SPAM_COMPLAINT = ("SpamComplaint", 100001, "Spam complaint")
    MANUALLY_DEACTIVATED = ("ManuallyDeactivated", 100002, "Manually deactivated")
    UNCONFIRMED = ("Unconfirmed", 100003, "Registration not confirmed")
    BLOCKED = ("Blocked", 100006, "ISP block")
    SMTP_API_ERROR = ("SMTPApiError", 100007, "SMTP API error")
    INBOUND_ERROR = ("InboundError", 100008, "Inbound error")
    DMARC_POLICY = ("DMARCPolicy", 100009, "DMARC policy")
    TEMPLATE_RENDERING_FAILED = ("TemplateRenderingFailed", 100010, "Template rendering failed")

    @property
    def type_name(self) -> str:
        return self.value[0]

    @property
    def code(self) -> int:
        return self.value[1]

    @property
    def display_name(self) -> str:
        return self.value[2]

    @classmethod
    def from_type_name(cls, name: str) -> BounceType:
        for member in cls:
            if member.type_name.lower() == name.lower():
                return member
        raise ValueError(name)

    @property
    def deactivates(self) -> bool:
        """Hard bounces and spam complaints make the address inactive (docs/postmark-api.md §2.7)."""
        return self in (BounceType.HARD_BOUNCE, BounceType.SPAM_COMPLAINT)


TRACK_LINKS_VALUES = ("None", "HtmlAndText", "HtmlOnly", "TextOnly")
