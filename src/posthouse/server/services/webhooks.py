"""Webhook configuration (docs/postmark-api.md §7.1) and, as extensions, each webhook's delivery log and redelivery.

A webhook's URL is where the server posts from inside the operator's network, so every URL and
custom header is checked here against SSRF and header injection (`webhooks.targets`) before it is
saved; the poster checks the URL again, with its resolved addresses, before every post.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from posthouse import wire
from posthouse.server.domain.statuses import BounceType
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.accounts import AccountService
from posthouse.server.services.bounces import parse_id
from posthouse.server.services.clock import Clock, iso
from posthouse.server.services.hints import WebhookHints
from posthouse.server.services.sending import NIL_MESSAGE_ID
from posthouse.server.store.base import Store
from posthouse.server.store.webhooks import PostRecord, WebhookRecord
from posthouse.server.webhooks.payloads import (
    BounceFacts,
    ClickFacts,
    ClickLocation,
    DeliveryFacts,
    OpenFacts,
    bounce_payload,
    click_payload,
    delivery_payload,
    open_payload,
)
from posthouse.server.webhooks.signing import new_secret
from posthouse.server.webhooks.targets import (
    Network,
    WebhookHeaderError,
    WebhookUrlError,
    split_userinfo,
    validate_webhook_headers,
    validate_webhook_url,
)

DEFAULT_STREAM = "outbound"
MAX_WEBHOOKS_PER_STREAM = 10  # Postmark's limit is unpublished; a third-party guide says 10 (docs/postmark-api.md §1.3)
MAX_DELIVERIES_PAGE = 500
# Postmark's Triggers object → the store's trigger columns: (trigger, ((sub-field, column), …)).
_TRIGGERS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("open", (("enabled", "on_open"), ("post_first_open_only", "open_first_only"))),
    ("click", (("enabled", "on_click"),)),
    ("delivery", (("enabled", "on_delivery"),)),
    ("bounce", (("enabled", "on_bounce"), ("include_content", "bounce_content"))),
    ("spam_complaint", (("enabled", "on_spam_complaint"), ("include_content", "spam_complaint_content"))),
    ("subscription_change", (("enabled", "on_subscription_change"),)),
)
_TRIGGER_OFF = {column: False for _, fields in _TRIGGERS for _, column in fields}

Auth = tuple[str, str] | None


def _triggers_wire(triggers: dict[str, bool]) -> wire.WebhookTriggers:
    t = {**_TRIGGER_OFF, **triggers}
    return wire.WebhookTriggers(
        open=wire.OpenTrigger(enabled=t["on_open"], post_first_open_only=t["open_first_only"]),
        click=wire.EnabledTrigger(enabled=t["on_click"]),
        delivery=wire.EnabledTrigger(enabled=t["on_delivery"]),
        bounce=wire.ContentTrigger(enabled=t["on_bounce"], include_content=t["bounce_content"]),
        spam_complaint=wire.ContentTrigger(enabled=t["on_spam_complaint"], include_content=t["spam_complaint_content"]),
        subscription_change=wire.EnabledTrigger(enabled=t["on_subscription_change"]),
    )


def webhook_wire(record: WebhookRecord) -> wire.Webhook:
    auth = None
    if record.http_auth_username is not None or record.http_auth_password is not None:
        auth = wire.WebhookHttpAuth(username=record.http_auth_username or "", password=record.http_auth_password or "")
    return wire.Webhook(
        id=record.id,
        url=record.url,
        message_stream=record.stream,
        http_auth=auth,
        http_headers=[wire.Header(name=n, value=v) for n, v in record.http_headers],
        triggers=_triggers_wire(record.triggers),
        secret=record.secret,
    )


def _delivery_wire(post: PostRecord) -> wire.WebhookDelivery:
    return wire.WebhookDelivery(
        id=post.id,
        event_id=post.event_id,
        record_type=post.record_type,
        state=post.state,
        attempts=post.attempts,
        next_attempt_at=iso(post.next_attempt_at),
        created_at=iso(post.created_at) or "",
        updated_at=iso(post.updated_at) or "",
        history=[
            wire.WebhookAttempt(
                attempted_at=iso(a.attempted_at) or "",
                outcome=a.outcome,
                status_code=a.status_code,
                response_excerpt=a.response_excerpt,
                duration_ms=a.duration_ms,
                error=a.error,
            )
            for a in post.history
        ],
    )


def _apply_triggers(current: dict[str, bool], requested: wire.WebhookTriggers | None) -> dict[str, bool]:
    """The trigger columns after a request: what it names changes, what it leaves out stays (§7.1 PUT)."""
    result = {**_TRIGGER_OFF, **current}
    if requested is None:
        return result
    for trigger, fields in _TRIGGERS:
        sent = getattr(requested, trigger)
        if sent is None:
            continue
        for name, column in fields:
            value = getattr(sent, name)
            if value is not None:
                result[column] = value
    return result


def _split_userinfo(url: str) -> tuple[str, Auth]:
    try:
        return split_userinfo(url)
    except WebhookUrlError as exc:
        raise ApiError(1354, f"Invalid 'Url': {exc}.") from None


def _auth_of(requested: wire.WebhookHttpAuth) -> Auth:
    """HttpAuth from a request; empty Username and Password mean none."""
    username, password = requested.username or "", requested.password or ""
    if not username and not password:
        return None
    if ":" in username:
        # RFC 7617 §2: the user-id of Basic authentication cannot contain a colon.
        raise ApiError(1361, "Invalid 'HttpAuth': the Username must not contain ':'.")
    return username, password


def _headers_of(requested: Sequence[wire.Header]) -> list[tuple[str, str]]:
    headers = []
    for header in requested:
        if not header.name:
            raise ApiError(1358, "Each of 'HttpHeaders' needs a 'Name'.")
        headers.append((header.name, "" if header.value is None else str(header.value)))
    return headers


# The sample events a test post can carry (the dashboard's "send test post"): Postmark's payloads for a message
# that was never sent (MessageID all zeros, Tag "test"), so a receiver can tell them from real events.
TEST_RECORD_TYPES = ("Delivery", "Bounce", "Open", "Click")
_TEST_RECIPIENT = "john.doe@example.com"


def sample_payload(record_type: str, server_id: int, stream: str, now: int) -> bytes:
    """A test post's payload, built by the same builders as real events."""
    if record_type == "Delivery":
        return delivery_payload(DeliveryFacts(
            message_id=NIL_MESSAGE_ID, server_id=server_id, message_stream=stream, recipient=_TEST_RECIPIENT,
            delivered_at_us=now, details="Test delivery webhook details", tag="test"))
    if record_type == "Bounce":
        return bounce_payload(BounceFacts(
            id=0, type=BounceType.HARD_BOUNCE, message_id=NIL_MESSAGE_ID, server_id=server_id,
            message_stream=stream, email=_TEST_RECIPIENT, from_="sender@example.com", bounced_at_us=now,
            details="Test bounce details", description="The server was unable to deliver your message (ex: "
            "unknown user, mailbox not found).", subject="Test subject", dump_available=False, inactive=False,
            can_activate=True, tag="test"))
    if record_type == "Open":
        return open_payload(OpenFacts(message_id=NIL_MESSAGE_ID, message_stream=stream, recipient=_TEST_RECIPIENT,
                                      received_at_us=now, first_open=True, tag="test"))
    return click_payload(ClickFacts(message_id=NIL_MESSAGE_ID, message_stream=stream, recipient=_TEST_RECIPIENT,
                                    received_at_us=now, original_link="https://example.com/",
                                    click_location=ClickLocation.HTML, tag="test"))


class WebhookService:
    def __init__(
        self, store: Store, accounts: AccountService, clock: Clock, allowed_networks: Sequence[Network] = (),
        hints: WebhookHints | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self.allowed_networks = tuple(allowed_networks)
        self.hints = hints  # told of every change, so this process's deliveries see it at once

    async def _record(self, server_id: int, webhook_id: str) -> WebhookRecord:
        number = parse_id(webhook_id)
        record = await self.store.get_webhook(server_id, number) if number is not None else None
        if record is None:
            raise NotFoundError(1352, f"Webhook '{webhook_id}' was not found.")
        return record

    def _target(
        self, url: str | None, requested_auth: wire.WebhookHttpAuth | None, current_auth: Auth
    ) -> tuple[str, Auth]:
        """(URL to save, Basic credentials) after validation; `current_auth` stays unless replaced."""
        if url is None or not url.strip():
            raise ApiError(1354, "A valid 'Url' is required.")
        url, url_auth = _split_userinfo(url.strip())
        if url_auth is not None and requested_auth is not None:
            raise ApiError(1361, "Give Basic credentials either in the 'Url' or in 'HttpAuth', not both.")
        try:
            url = validate_webhook_url(url, allowed_networks=self.allowed_networks)  # saved as normalised
        except WebhookUrlError as exc:
            raise ApiError(1354, f"Invalid 'Url': {exc}.") from None
        if url_auth is not None:
            return url, url_auth if any(url_auth) else None
        return url, _auth_of(requested_auth) if requested_auth is not None else current_auth

    @staticmethod
    def _checked_headers(headers: list[tuple[str, str]], auth: Auth) -> list[tuple[str, str]]:
        try:
            return validate_webhook_headers(headers, has_basic_auth=auth is not None)
        except WebhookHeaderError as exc:
            raise ApiError(1358, f"Invalid 'HttpHeaders': {exc}.") from None

    async def search(self, server_id: int, stream: str | None) -> wire.WebhookList:
        """The server's webhooks, of one stream or of all (§7.1: no paging)."""
        return wire.WebhookList(webhooks=[webhook_wire(r) for r in await self.store.list_webhooks(server_id, stream)])

    async def get(self, server_id: int, webhook_id: str) -> wire.Webhook:
        return webhook_wire(await self._record(server_id, webhook_id))

    async def create(self, server_id: int, request: wire.WebhookRequest) -> wire.Webhook:
        if request.id is not None:
            raise ApiError(1356, "The 'ID' must not be sent when creating a webhook.")
        stream_id = request.message_stream or DEFAULT_STREAM
        stream = await self.accounts.get_stream(server_id, stream_id)  # ErrorCode 1226 when there is none
        if stream.stream_type == "Inbound":
            raise ApiError(
                1351,
                "Webhooks cannot be added to an inbound stream; inbound mail is posted to the server's InboundHookUrl.",
            )
        if stream.archived_at is not None:
            raise ApiError(1350, f"Webhooks cannot be added to the archived stream '{stream_id}'.")
        url, auth = self._target(request.url, request.http_auth, None)
        headers = self._checked_headers(_headers_of(request.http_headers or []), auth)
        record = WebhookRecord(
            id=0,
            server_id=server_id,
            stream=stream_id,
            url=url,
            http_auth_username=auth[0] if auth else None,
            http_auth_password=auth[1] if auth else None,
            http_headers=headers,
            triggers=_apply_triggers({}, request.triggers),
            secret=new_secret(),
            created_at=self.clock.micros(),
        )
        created = await self.store.create_webhook(record, limit=MAX_WEBHOOKS_PER_STREAM)
        if created is None:
            raise ApiError(1359, f"The stream '{stream_id}' already has the maximum of {MAX_WEBHOOKS_PER_STREAM} "
                                 "webhooks.")
        record.id = created
        if self.hints is not None:
            self.hints.invalidate()
        return webhook_wire(record)

    async def edit(self, server_id: int, webhook_id: str, request: wire.WebhookRequest) -> wire.Webhook:
        record = await self._record(server_id, webhook_id)
        if request.id is not None and str(request.id) != str(record.id):
            raise ApiError(1357, "The webhook 'ID' cannot be changed.")
        if request.message_stream is not None and request.message_stream != record.stream:
            raise ApiError(
                1357, "The webhook 'MessageStream' cannot be changed; create a webhook on the other stream instead."
            )
        current: Auth = None
        if record.http_auth_username is not None or record.http_auth_password is not None:
            current = (record.http_auth_username or "", record.http_auth_password or "")
        if request.url is not None:
            url, auth = self._target(request.url, request.http_auth, current)
        else:
            url, auth = record.url, _auth_of(request.http_auth) if request.http_auth is not None else current
        headers = _headers_of(request.http_headers) if request.http_headers is not None else record.http_headers
        # Checked again even when unchanged: new HttpAuth conflicts with a kept Authorization header.
        record.http_headers = self._checked_headers(headers, auth)
        record.url = url
        record.http_auth_username, record.http_auth_password = auth if auth else (None, None)
        record.triggers = _apply_triggers(record.triggers, request.triggers)
        await self.store.update_webhook(record)
        if self.hints is not None:
            self.hints.invalidate()
        return webhook_wire(record)

    async def delete(self, server_id: int, webhook_id: str) -> wire.ErrorResponse:
        record = await self._record(server_id, webhook_id)
        await self.store.delete_webhook(server_id, record.id, self.clock.micros())
        if self.hints is not None:
            self.hints.invalidate()
        return wire.ErrorResponse(error_code=0, message=f"Webhook {record.id} removed.")

    # -- extensions: the delivery log -------------------------------------------------------

    async def deliveries(
        self, server_id: int, webhook_id: str, count: int | None, offset: int | None
    ) -> wire.WebhookDeliveryList:
        """The posts of one webhook, newest first, each with its attempts."""
        count = 100 if count is None else count
        offset = 0 if offset is None else offset
        if not 1 <= count <= MAX_DELIVERIES_PAGE or offset < 0:
            raise ApiError(1361, f"'count' must be between 1 and {MAX_DELIVERIES_PAGE} and 'offset' at least 0.")
        record = await self._record(server_id, webhook_id)
        total, posts = await self.store.list_webhook_posts(record.id, offset, count)
        return wire.WebhookDeliveryList(total_count=total, deliveries=[_delivery_wire(p) for p in posts])

    async def send_test(self, server_id: int, webhook_id: str, record_type: str) -> int:
        """Queue a sample post of `record_type` (one of TEST_RECORD_TYPES) to this webhook alone, due now: the
        dispatcher posts it like any other (signed, retried, logged). The post's id in the delivery log."""
        record = await self._record(server_id, webhook_id)
        if record_type not in TEST_RECORD_TYPES:
            raise ApiError(1361, f"A test post is one of {', '.join(TEST_RECORD_TYPES)}, not '{record_type}'.")
        now = self.clock.micros()
        payload = sample_payload(record_type, server_id, record.stream, now)
        return await self.store.queue_webhook_post(record.id, server_id, f"test-{uuid.uuid4()}_{record.id}",
                                                   record_type, payload.decode(), now)

    async def redeliver(self, server_id: int, webhook_id: str, delivery_id: str) -> wire.ErrorResponse:
        """Queue one post again now, with a fresh retry schedule, whatever its state."""
        record = await self._record(server_id, webhook_id)
        number = parse_id(delivery_id)
        found = number is not None and await self.store.redeliver_webhook_post(record.id, number, self.clock.micros())
        if not found:
            raise NotFoundError(1352, f"Webhook {record.id} has no delivery '{delivery_id}'.", 404)
        return wire.ErrorResponse(error_code=0, message="OK")
