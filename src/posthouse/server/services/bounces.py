"""Bounces: searching and reading them, reactivating an address, and the delivery stats (docs/postmark-api.md §5)."""

from __future__ import annotations

import msgspec

from posthouse import wire
from posthouse.server.domain.statuses import BounceType
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services import notifications
from posthouse.server.services.clock import Clock, iso
from posthouse.server.store.base import BounceRecord, Store
from posthouse.server.store.feedback import BounceFilter
from posthouse.server.webhooks.payloads import SuppressionOrigin, SuppressionReason

QUERY_ERROR = 1000  # Postmark's "Bounces query exception"
_MAX_ID = 2**63 - 1  # ids are BIGINT: a longer number names no bounce (and must not reach the database)
_CANNOT_ACTIVATE = "Cannot activate bounce. Certain bounces and spam complaints cannot be activated by the user"


def parse_bounce_type(value: str | None) -> str | None:
    """A `type` filter → Postmark's spelling of the type name; unknown names are a query error."""
    if not value:
        return None
    try:
        return BounceType.from_type_name(value).type_name
    except ValueError:
        raise ApiError(QUERY_ERROR, f"Invalid bounce type: '{value}'.") from None


def parse_id(value: str) -> int | None:
    """A numeric id from a path, or None when the text cannot be an id."""
    if not value.isdigit() or not value.isascii() or int(value) > _MAX_ID:
        return None
    return int(value)


def bounce_wire(record: BounceRecord, *, with_content: bool = False) -> wire.Bounce:
    try:
        name = BounceType.from_type_name(record.type).display_name
    except ValueError:
        name = record.type
    return wire.Bounce(
        record_type="Bounce",
        id=record.id or 0,
        type=record.type,
        type_code=record.type_code,
        name=name,
        tag=record.tag,
        # A bounce that names no message we sent (a stray DSN) has no MessageID; postmark-python
        # requires a string here, so it gets "" rather than null.
        message_id=record.message_id or "",
        server_id=record.server_id,
        message_stream=record.stream,
        description=record.description,
        details=record.details,
        email=record.email,
        sender=record.sender,
        bounced_at=iso(record.bounced_at) or "",
        dump_available=record.dump_available,
        inactive=record.inactive,
        can_activate=record.can_activate,
        subject=record.subject,
        content=record.dump if with_content else msgspec.UNSET,
    )


class BounceService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def search(self, server_id: int, filters: BounceFilter, count: int, offset: int) -> wire.BounceList:
        total, records = await self.store.list_bounces(server_id, filters, offset, count)
        return wire.BounceList(total_count=total, bounces=[bounce_wire(r) for r in records])

    async def page(self, server_id: int, *, stream: str, type_name: str | None = None, email: str | None = None,
                   inactive: bool | None = None, offset: int = 0, count: int = 50) -> wire.BounceList:
        """The dashboard's list (issue 15): a stream's bounces, newest first, as `GET /bounces` finds them with
        `messagestream`, `type` (`parse_bounce_type`'s names; ApiError 1000 for others), `emailfilter` (part of
        the address) and `inactive`."""
        filters = BounceFilter(type=parse_bounce_type(type_name), inactive=inactive, email=email or None,
                               stream=stream)
        return await self.search(server_id, filters, count, offset)

    async def _record(self, server_id: int, bounce_id: str) -> BounceRecord:
        number = parse_id(bounce_id)
        record = await self.store.get_bounce(server_id, number) if number is not None else None
        if record is None:
            raise NotFoundError(1001, f"Bounce was not found: there is no bounce with the ID '{bounce_id}'.")
        return record

    async def get(self, server_id: int, bounce_id: str) -> wire.Bounce:
        return bounce_wire(await self._record(server_id, bounce_id), with_content=True)

    async def dump(self, server_id: int, bounce_id: str) -> wire.Dump:
        """The raw bounce as received; "" when there is none (Postmark's answer for an expired dump)."""
        return wire.Dump(body=(await self._record(server_id, bounce_id)).dump)

    async def activate(self, server_id: int, bounce_id: str) -> wire.BounceActivation:
        """Reactivate the address of a bounce that allows it; a SubscriptionChange webhook says so
        (SuppressSending false, Origin Customer), posted only if the address really was suppressed."""
        record = await self._record(server_id, bounce_id)
        if not record.can_activate:
            raise ApiError(1003, f"{_CANNOT_ACTIVATE}: a {record.type} bounce cannot be.")
        # The address may be suppressed for another reason than this bounce (a later spam complaint);
        # reactivating would lift that suppression too, which no user may do (docs/postmark-api.md §8.2).
        held = await self.store.list_suppressions(server_id, record.stream, email=record.email)
        if any(s.reason == SuppressionReason.SPAM_COMPLAINT.value for s in held):
            raise ApiError(1003, f"{_CANNOT_ACTIVATE}: {record.email} is suppressed after a spam complaint.")
        assert record.id is not None
        event = notifications.subscription_event(
            server_id=server_id,
            stream=record.stream,
            recipient=record.email,
            at=self.clock.micros(),
            origin=SuppressionOrigin.CUSTOMER,
            suppress_sending=False,
            reason=None,
        )
        await self.store.activate_bounce(server_id, record.id, [event])
        return wire.BounceActivation(message="OK", bounce=bounce_wire(await self._record(server_id, bounce_id)))

    async def tags(self, server_id: int) -> list[str]:
        """Every tag that some bounce of the server carries (Postmark's legacy `/bounces/tags`)."""
        return await self.store.bounce_tags(server_id)

    async def delivery_stats(self, server_id: int) -> wire.DeliveryStats:
        """Inactive addresses, and bounces by type: an "All" row, then a row per type seen, by TypeCode."""
        inactive, counts = await self.store.bounce_counts(server_id)
        # "All" has no Type or TypeCode at Postmark; postmark-python requires both on every row,
        # so it gets the invented Type "All" and TypeCode 0 (docs/postmark-api.md §5 compat note).
        rows = [wire.BounceTypeCount(type="All", type_code=0, name="All", count=sum(counts.values()))]
        rows.extend(
            wire.BounceTypeCount(type=t.type_name, type_code=t.code, name=t.display_name, count=counts[t.type_name])
            for t in sorted(BounceType, key=lambda t: t.code)
            if counts.get(t.type_name)
        )
        return wire.DeliveryStats(inactive_mails=inactive, bounces=rows)
