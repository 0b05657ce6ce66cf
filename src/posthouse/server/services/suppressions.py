"""Suppressions: the addresses a stream no longer sends to, listed, added and lifted by hand
(docs/postmark-api.md §8.2)."""

from __future__ import annotations

from dataclasses import dataclass

from posthouse import wire
from posthouse.server.domain.addresses import AddressError, normalize_email
from posthouse.server.errors import ApiError
from posthouse.server.services import notifications
from posthouse.server.services.accounts import AccountService
from posthouse.server.services.clock import Clock, iso
from posthouse.server.store.base import Store, Suppression, WebhookEvent
from posthouse.server.webhooks.payloads import SuppressionOrigin, SuppressionReason

MAX_CHANGES = 50  # per request (docs/postmark-api.md §8.2, ErrorCode 1410)
SUPPRESSED = "Suppressed"
DELETED = "Deleted"
FAILED = "Failed"
_INVALID = "An invalid email address was provided."
_NO_AUTHORITY = (
    "You do not have the required authority to change this suppression: a spam complaint suppression cannot be deleted."
)


def parse_reason(value: str | None) -> str | None:
    """A `SuppressionReason` filter, case-insensitive, in Postmark's spelling (ErrorCode 1404)."""
    if not value:
        return None
    for reason in SuppressionReason:
        if reason.value.lower() == value.lower():
            return reason.value
    raise ApiError(1404, f"Invalid 'SuppressionReason': '{value}'. Use HardBounce, SpamComplaint or ManualSuppression.")


def parse_origin(value: str | None) -> str | None:
    """An `Origin` filter, case-insensitive, in Postmark's spelling (ErrorCode 1405)."""
    if not value:
        return None
    for origin in SuppressionOrigin:
        if origin.value.lower() == value.lower():
            return origin.value
    raise ApiError(1405, f"Invalid 'Origin': '{value}'. Use Recipient, Customer or Admin.")


def _addresses(request: wire.SuppressionRequest) -> list[str]:
    if not request.suppressions:
        raise ApiError(1409, 'The request body must list \'Suppressions\': [{"EmailAddress": "…"}].')
    if len(request.suppressions) > MAX_CHANGES:
        raise ApiError(1410, f"You may change up to {MAX_CHANGES} suppressions in a single request.")
    return [(item.email_address or "").strip() for item in request.suppressions]


def _email_of(text: str) -> str | None:
    """The address as suppressions keep it (validated, lower-cased), or None if it is not one."""
    try:
        return normalize_email(text).lower()
    except AddressError:
        return None


class SuppressionService:
    def __init__(self, store: Store, accounts: AccountService, clock: Clock) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock

    async def dump(
        self,
        server_id: int,
        stream: str,
        *,
        reason: str | None = None,
        origin: str | None = None,
        email: str | None = None,
        from_time: int | None = None,
        to_time: int | None = None,
    ) -> wire.SuppressionDump:
        await self.accounts.get_stream(server_id, stream)  # ErrorCode 1226 for a stream that does not exist
        records = await self.store.list_suppressions(
            server_id, stream, reason=reason, origin=origin, email=email, from_time=from_time, to_time=to_time
        )
        return wire.SuppressionDump(
            suppressions=[
                wire.SuppressionEntry(
                    email_address=r.email,
                    suppression_reason=r.reason,
                    origin=r.origin,
                    created_at=iso(r.created_at) or "",
                )
                for r in records
            ]
        )

    async def create(self, server_id: int, stream: str, request: wire.SuppressionRequest) -> wire.SuppressionResults:
        """Suppress each valid address (origin Customer, reason ManualSuppression). An address already
        suppressed stays as it was and is reported `Suppressed`; only a new suppression is announced
        by a SubscriptionChange webhook (SuppressSending true)."""
        await self.accounts.get_stream(server_id, stream)
        texts = _addresses(request)
        now = self.clock.micros()
        results: list[wire.SuppressionResult] = []
        new: dict[str, Suppression] = {}
        for text in texts:
            email = _email_of(text)
            if email is None:
                results.append(wire.SuppressionResult(email_address=text, status=FAILED, message=_INVALID))
                continue
            results.append(wire.SuppressionResult(email_address=text, status=SUPPRESSED, message=None))
            # One row and one webhook per address, however often the request names it.
            new.setdefault(
                email,
                Suppression(
                    server_id=server_id,
                    stream=stream,
                    email=email,
                    reason=SuppressionReason.MANUAL_SUPPRESSION.value,
                    origin=SuppressionOrigin.CUSTOMER.value,
                    created_at=now,
                    event=notifications.subscription_event(
                        server_id=server_id,
                        stream=stream,
                        recipient=email,
                        at=now,
                        origin=SuppressionOrigin.CUSTOMER,
                        suppress_sending=True,
                        reason=SuppressionReason.MANUAL_SUPPRESSION,
                    ),
                ),
            )
        if new:
            await self.store.add_suppressions(list(new.values()))
        return wire.SuppressionResults(suppressions=results)

    async def delete(self, server_id: int, stream: str, request: wire.SuppressionRequest) -> wire.SuppressionResults:
        """Lift each valid address's suppression, which reactivates its bounces; a lifted suppression
        is announced by a SubscriptionChange webhook (SuppressSending false). Spam complaint
        suppressions stay: the recipient asked not to get mail, and only they can change that."""
        await self.accounts.get_stream(server_id, stream)
        texts = _addresses(request)
        now = self.clock.micros()
        results: list[wire.SuppressionResult] = []
        lifted: dict[str, WebhookEvent] = {}
        refused: set[str] = set()
        for text in texts:
            email = _email_of(text)
            if email is None:
                results.append(wire.SuppressionResult(email_address=text, status=FAILED, message=_INVALID))
                continue
            if email not in lifted and email not in refused:
                held = await self.store.list_suppressions(server_id, stream, email=email)
                if any(s.reason == SuppressionReason.SPAM_COMPLAINT.value for s in held):
                    refused.add(email)
                else:
                    lifted[email] = notifications.subscription_event(
                        server_id=server_id,
                        stream=stream,
                        recipient=email,
                        at=now,
                        origin=SuppressionOrigin.CUSTOMER,
                        suppress_sending=False,
                        reason=None,
                    )
            if email in refused:
                results.append(wire.SuppressionResult(email_address=text, status=FAILED, message=_NO_AUTHORITY))
            else:
                results.append(wire.SuppressionResult(email_address=text, status=DELETED, message=None))
        if lifted:
            await self.store.remove_suppressions(server_id, stream, list(lifted), list(lifted.values()))
        return wire.SuppressionResults(suppressions=results)


    async def page(self, server_id: int, stream: str, *, email: str | None = None, reason: str | None = None
                   ) -> SuppressionPage:
        """The newest `PAGE_SIZE` suppressions of a stream, of one address (as the dump's `emailaddress` finds it)
        and one reason (`parse_reason`'s spelling) when given. ErrorCode 1226 for a stream that does not exist."""
        await self.accounts.get_stream(server_id, stream)
        records = await self.store.list_suppressions(server_id, stream, email=email or None, reason=reason,
                                                     limit=PAGE_SIZE + 1)
        return SuppressionPage([wire.SuppressionEntry(email_address=r.email, suppression_reason=r.reason,
                                                      origin=r.origin, created_at=iso(r.created_at) or "")
                                for r in records[:PAGE_SIZE]], len(records) > PAGE_SIZE)


# -- the dashboard's suppressions page (issue 15) --------------------------------------------------

PAGE_SIZE = 100  # suppressions a dashboard page lists, newest first
REASONS = tuple(r.value for r in SuppressionReason)  # HardBounce, SpamComplaint, ManualSuppression


@dataclass(frozen=True, slots=True)
class SuppressionPage:
    entries: list[wire.SuppressionEntry]
    has_more: bool  # more than `PAGE_SIZE` match: narrow the search to see them

    @staticmethod
    def can_reactivate(entry: wire.SuppressionEntry) -> bool:
        """Whether deleting it would lift it (a spam complaint's stays: docs/postmark-api.md §8.2)."""
        return entry.suppression_reason != SuppressionReason.SPAM_COMPLAINT.value


def suppression_request(*emails: str) -> wire.SuppressionRequest:
    """What `create` and `delete` take, for addresses typed into a form."""
    return wire.SuppressionRequest(suppressions=[wire.SuppressionAddress(email_address=e) for e in emails])
