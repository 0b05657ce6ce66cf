"""Servers, API tokens and message streams: who may call the API, and the settings of each server."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from posthouse import wire
from posthouse.server.config import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS
from posthouse.server.domain.statuses import TRACK_LINKS_VALUES
from posthouse.server.errors import ApiError, AuthenticationError, NotFoundError, StoreError
from posthouse.server.services.clock import Clock
from posthouse.server.services.hints import WebhookHints
from posthouse.server.store.base import ServerRecord, Stmt, Store, StreamRecord
from posthouse.server.store.webhooks import LegacyHook, legacy_hook_stmts
from posthouse.server.webhooks.signing import new_secret
from posthouse.server.webhooks.targets import Network, WebhookUrlError, split_userinfo, validate_webhook_url

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 45  # Postmark's default; the `retention_days` setting changes it
COLORS = ("Purple", "Blue", "Turquoise", "Green", "Red", "Yellow", "Grey", "Orange")
DEFAULT_STREAMS = (
    ("outbound", "Default Transactional Stream", "Transactional", "None"),
    ("inbound", "Default Inbound Stream", "Inbound", "None"),
    ("broadcast", "Default Broadcast Stream", "Broadcasts", "Postmark"),
)
STREAM_TYPES = ("Transactional", "Broadcasts", "Inbound")
MAX_STREAMS = 10
_STREAM_ID = re.compile(r"^[a-z][a-z0-9_-]{0,29}$")
_TOKEN_CACHE_SECONDS = 5.0
# Token lookups remembered at most (LRU): each bad token sent is a lookup too, and remembering every one
# for ever let a client grow the process by 112 MB with 500,000 random tokens.
TOKEN_CACHE_SIZE = 10_000
_DEFAULT_SETTINGS: dict[str, Any] = {
    "color": "Purple", "smtp_api_activated": True, "raw_email_enabled": False, "delivery_type": "Live",
    "inbound_hook_url": "", "bounce_hook_url": "", "open_hook_url": "", "delivery_hook_url": "",
    "click_hook_url": "", "post_first_open_only": False, "inbound_domain": "", "inbound_spam_threshold": 0,
    "track_opens": False, "track_links": "None", "include_bounce_content_in_hook": False,
    "enable_smtp_api_error_hooks": False,
}

# Postmark's legacy per-server hook URLs (docs/postmark-api.md §8.3): each becomes a webhook of the default
# stream with these triggers. The bounce hook takes spam complaints too, as Postmark's did before
# SpamComplaint had a trigger of its own.
_LEGACY_HOOKS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, bool]]]] = {
    "bounce_hook_url": ("BounceHookUrl", lambda s: {
        "on_bounce": True, "bounce_content": bool(s["include_bounce_content_in_hook"]),
        "on_spam_complaint": True, "spam_complaint_content": bool(s["include_bounce_content_in_hook"])}),
    "open_hook_url": ("OpenHookUrl", lambda s: {"on_open": True, "open_first_only": bool(s["post_first_open_only"])}),
    "click_hook_url": ("ClickHookUrl", lambda s: {"on_click": True}),
    "delivery_hook_url": ("DeliveryHookUrl", lambda s: {"on_delivery": True}),
    # The inbound hook is a webhook of the server's inbound stream (services/inbound.py posts to it).
    "inbound_hook_url": ("InboundHookUrl", lambda s: {"on_inbound": True}),
}
_INBOUND_CACHE_SECONDS = 5.0


class TtlCache:
    """At most `size` entries, each kept `ttl` seconds; past the size the least recently used goes first."""

    def __init__(self, size: int, ttl: float, now: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self._now = now
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> tuple[bool, Any]:
        """(found, value); an expired entry is dropped and not found."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= self._now():
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = (self._now() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_token() -> str:
    """Postmark's tokens are UUIDs; so are ours (only the SHA-256 is stored)."""
    return str(uuid.uuid4())


@dataclass(slots=True)
class Server:
    """An authenticated server and its settings (snake_case keys of `wire.ServerRequest`)."""

    id: int
    name: str
    settings: dict[str, Any]

    @property
    def is_sandbox(self) -> bool:
        return self.settings.get("delivery_type") == "Sandbox"


class AccountService:
    def __init__(self, store: Store, clock: Clock, webhook_networks: Sequence[Network] = (),
                 webhook_hints: WebhookHints | None = None, token_cache_size: int = TOKEN_CACHE_SIZE,
                 default_retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self.store = store
        self.default_retention_days = default_retention_days  # for servers without RetentionDays of their own
        self.clock = clock
        self.webhook_networks = tuple(webhook_networks)  # legacy hook URLs are checked as webhooks' are
        self.webhook_hints = webhook_hints
        self._token_cache = TtlCache(token_cache_size, _TOKEN_CACHE_SECONDS)
        self._stream_cache: dict[int, tuple[float, dict[str, StreamRecord]]] = {}
        self._inbound_cache = TtlCache(token_cache_size, _INBOUND_CACHE_SECONDS)

    # -- authentication -----------------------------------------------------------------------

    async def _lookup(self, token: str) -> Any:
        key = hash_token(token)
        found, record = self._token_cache.get(key)
        if found:
            return record
        record = await self.store.find_token(key, self.clock.micros())
        self._token_cache.put(key, record)
        return record

    @property
    def cached_lookups(self) -> int:
        """Token and server-name lookups remembered now (bounded by the cache size)."""
        return len(self._token_cache)

    async def authenticate_server(self, token: str | None) -> Server:
        if not token:
            raise AuthenticationError("Request does not contain a valid Server token.")
        record = await self._lookup(token)
        if record is None or record.kind != "server" or record.server_id is None:
            raise AuthenticationError("Request does not contain a valid Server token.")
        server = await self.store.get_server(record.server_id)
        if server is None:
            raise AuthenticationError("Request does not contain a valid Server token.")
        return Server(server.id, server.name, {**_DEFAULT_SETTINGS, **server.settings})

    async def server_named(self, name: str) -> Server | None:
        """A server by name (for SMTP trusted networks), cached like tokens."""
        key = "name:" + name.lower()
        found, cached = self._token_cache.get(key)
        if found:
            return cached  # type: ignore[no-any-return]
        record = await self.store.get_server_by_name(name)
        server = Server(record.id, record.name, {**_DEFAULT_SETTINGS, **record.settings}) if record else None
        self._token_cache.put(key, server)
        return server

    async def server_by_id(self, server_id: int) -> Server | None:
        """A server by id (background work that acts for a server, like bulk expansion)."""
        record = await self.store.get_server(server_id)
        return Server(record.id, record.name, {**_DEFAULT_SETTINGS, **record.settings}) if record else None

    async def server_cached(self, server_id: int) -> Server | None:
        """A server by id, remembered a few seconds (each inbound message asks at RCPT and again to post)."""
        found, cached = self._inbound_cache.get(f"id:{server_id}")
        if found:
            return cached  # type: ignore[no-any-return]
        server = await self.server_by_id(server_id)
        self._inbound_cache.put(f"id:{server_id}", server)
        return server

    async def inbound_domain_owner(self, domain: str) -> int | None:
        """The server whose InboundDomain `domain` is (the first one, by id), or None."""
        found, owners = self._inbound_cache.get("domains")
        if not found:
            owners = await self.store.inbound_domains()
            self._inbound_cache.put("domains", owners)
        owner = owners.get(domain.lower().rstrip("."))
        return int(owner) if owner is not None else None

    async def authenticate_account(self, token: str | None) -> None:
        record = await self._lookup(token) if token else None
        if record is None or record.kind != "account":
            raise AuthenticationError("Request does not contain a valid Account token.")

    # -- bootstrap and tokens -----------------------------------------------------------------

    async def bootstrap(self) -> tuple[str, str] | None:
        """On the first start: server `default` and an account token; returns both tokens once."""
        if await self.store.count_tokens("account") or await self.store.get_server_by_name("default"):
            return None
        server_token = new_token()
        try:
            await self.store.create_server("default", dict(_DEFAULT_SETTINGS), hash_token(server_token),
                                           server_token[-4:], self.clock.micros(), DEFAULT_STREAMS)
        except StoreError:
            # Another node starting at the same moment created it first (unique name).
            if await self.store.get_server_by_name("default"):
                return None
            raise
        account_token = await self.create_account_token()
        return server_token, account_token

    async def create_account_token(self) -> str:
        token = new_token()
        await self.store.add_token(hash_token(token), "account", None, token[-4:], self.clock.micros())
        return token

    async def create_server_token(self, server_id: int) -> str:
        token = new_token()
        await self.store.add_token(hash_token(token), "server", server_id, token[-4:], self.clock.micros())
        return token

    async def rotate_token(self, server_id: int | None, grace_seconds: float = 0.0) -> tuple[str, int]:
        """A new token for the server (None: a new account token); the tokens it replaces stop working after
        `grace_seconds` (0: at once). Returns the new token, shown once, and how many were replaced. Other
        processes stop taking a replaced token within their 5 s token cache."""
        token = new_token()
        now = self.clock.micros()
        kind = "account" if server_id is None else "server"
        replaced = await self.store.rotate_tokens(kind, server_id, hash_token(token), token[-4:], now,
                                                  now + int(grace_seconds * 1_000_000))
        self._token_cache.clear()
        return token, replaced

    # -- servers ------------------------------------------------------------------------------

    def _validated_settings(self, request: wire.ServerRequest, base: dict[str, Any], *, creating: bool
                            ) -> dict[str, Any]:
        fields = {k: v for k, v in msgspec.structs.asdict(request).items() if v is not None and k != "name"}
        # Postmark takes its colors in any case and answers with the spelling the client sent (postmark.js's
        # own test edits a server to "red" and expects "red" back), so the value is checked, not rewritten.
        if "color" in fields and str(fields["color"]).lower() not in {c.lower() for c in COLORS}:
            raise ApiError(607, f"Invalid color: '{fields['color']}'. Use one of {', '.join(COLORS)}.")
        if "track_links" in fields and fields["track_links"] not in TRACK_LINKS_VALUES:
            raise ApiError(612, f"Invalid TrackLinks value: '{fields['track_links']}'.")
        if "delivery_type" in fields:
            if not creating:
                fields.pop("delivery_type")  # DeliveryType is set at creation only (docs/postmark-api.md §8.3)
            elif fields["delivery_type"] not in ("Live", "Sandbox"):
                raise ApiError(613, f"Invalid DeliveryType: '{fields['delivery_type']}'. Use Live or Sandbox.")
        retention = fields.get("retention_days")
        if retention is not None and not MIN_RETENTION_DAYS <= retention <= MAX_RETENTION_DAYS:
            # A Posthouse extension, so a code of the extensions' range (docs/postmark-api.md has none for it).
            raise ApiError(1620, f"RetentionDays must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS}.")
        threshold = fields.get("inbound_spam_threshold")
        if threshold is not None and not 0 <= threshold <= 30:
            raise ApiError(611, "InboundSpamThreshold must be between 0 and 30.")
        return {**base, **fields}

    async def _check_inbound_domain(self, settings: dict[str, Any], server_id: int | None) -> None:
        """ErrorCode 602 when another server has this InboundDomain already (in any case, with or without
        the final dot): mail to a domain can go to one server only (docs/postmark-api.md §1.3)."""
        domain = str(settings.get("inbound_domain") or "").strip().lower().rstrip(".")
        if not domain:
            return
        owner = (await self.store.inbound_domains()).get(domain)
        if owner is not None and owner != server_id:
            raise ApiError(602, f"The inbound domain '{settings['inbound_domain']}' is already in use by another "
                                "server.")

    def _legacy_hooks(self, server_id: int | None, settings: dict[str, Any], sent: set[str]
                      ) -> dict[str, LegacyHook | None]:
        """The webhook each legacy hook URL stands for (None: no URL), by setting name. A URL a webhook could
        not have (the same SSRF checks) is ErrorCode 1354 if this request sent it (`sent`: setting keys);
        one saved earlier (before `webhook_allowed_networks` narrowed, say) gets no hook and a warning, so
        it cannot block edits of other settings."""
        hooks: dict[str, LegacyHook | None] = {}
        for key, (name, triggers) in _LEGACY_HOOKS.items():
            url = str(settings.get(key) or "").strip()
            hooks[name] = None
            if not url:
                continue
            try:
                url, auth = split_userinfo(url)
                url = validate_webhook_url(url, allowed_networks=self.webhook_networks)  # saved as normalised
            except WebhookUrlError as exc:
                if key in sent:
                    raise ApiError(1354, f"Invalid '{name}': {exc}.") from None
                log.warning("server %s: its %s is not posted to: %s", server_id, name, exc)
                continue
            hooks[name] = LegacyHook(url, auth[0] if auth else None, auth[1] if auth else None, triggers(settings),
                                     stream="inbound" if key == "inbound_hook_url" else "outbound")
        return hooks

    def _hook_stmts(self, server_id: Any, hooks: dict[str, LegacyHook | None]) -> list[Stmt]:
        stmts = legacy_hook_stmts(server_id, hooks, new_secret, self.clock.micros())
        # Other nodes' webhook hints learn of it at commit (issue 12).
        return [*stmts, *self.store.change_notice("webhooks")] if stmts else []

    def _invalidate_hooks(self) -> None:
        if self.webhook_hints is not None:
            self.webhook_hints.invalidate()

    async def adopt_legacy_hooks(self) -> int:
        """Give servers whose hook URLs were saved by a version that did not post to them their webhooks.
        Run at start; a server that has any legacy hook, or no URL, is left alone. How many changed."""
        have = await self.store.servers_with_legacy_hooks()
        adopted = offset = 0
        while True:
            total, records = await self.store.list_servers(offset, 500, None)
            for record in records:
                settings = {**_DEFAULT_SETTINGS, **record.settings}
                if record.id in have or not any(settings.get(key) for key in _LEGACY_HOOKS):
                    continue
                hooks = self._legacy_hooks(record.id, settings, set())
                if any(hooks.values()):
                    await self.store.transact(self._hook_stmts(record.id, hooks))
                    adopted += 1
            offset += len(records)
            if not records or offset >= total:
                break
        if adopted:
            self.store.webhooks_changed()
            self._invalidate_hooks()
        return adopted

    async def create_server(self, request: wire.ServerRequest) -> tuple[ServerRecord, str]:
        name = (request.name or "").strip()
        if not name:
            raise ApiError(608, "Server name is required.")
        if await self.store.get_server_by_name(name):
            raise ApiError(603, f"A server named '{name}' already exists.")
        settings = self._validated_settings(request, dict(_DEFAULT_SETTINGS), creating=True)
        await self._check_inbound_domain(settings, None)
        hooks = self._legacy_hooks(None, settings, set(_LEGACY_HOOKS))
        token = new_token()
        server_id = await self.store.create_server(name, settings, hash_token(token), token[-4:],
                                                   self.clock.micros(), DEFAULT_STREAMS,
                                                   hooks=lambda new_id: self._hook_stmts(new_id, hooks))
        self._invalidate_hooks()
        self._inbound_cache.clear()
        record = await self.store.get_server(server_id)
        assert record is not None
        return record, token

    async def get_server(self, server_id: int) -> ServerRecord:
        record = await self.store.get_server(server_id)
        if record is None:
            raise NotFoundError(609, f"Server {server_id} was not found.", 404)
        record.settings = {**_DEFAULT_SETTINGS, **record.settings}
        return record

    async def list_servers(self, offset: int, count: int, name: str | None) -> tuple[int, list[ServerRecord]]:
        if count > 500 or count < 1 or offset < 0:
            raise ApiError(600, "Count must be between 1 and 500 and offset at least 0.")
        total, records = await self.store.list_servers(offset, count, name)
        for record in records:
            record.settings = {**_DEFAULT_SETTINGS, **record.settings}
        return total, records

    async def edit_server(self, server_id: int, request: wire.ServerRequest) -> ServerRecord:
        record = await self.get_server(server_id)
        name = record.name
        if request.name is not None:
            name = request.name.strip()
            if not name:
                raise ApiError(608, "Server name is required.")
            other = await self.store.get_server_by_name(name)
            if other and other.id != server_id:
                raise ApiError(603, f"A server named '{name}' already exists.")
        settings = self._validated_settings(request, record.settings, creating=False)
        if request.inbound_domain is not None:
            await self._check_inbound_domain(settings, server_id)
        sent = {key for key in _LEGACY_HOOKS if getattr(request, key) is not None}
        hooks = self._legacy_hooks(server_id, settings, sent)
        await self.store.update_server(server_id, name, settings, self._hook_stmts(server_id, hooks))
        self._token_cache.clear()
        self._inbound_cache.clear()
        self._invalidate_hooks()
        return await self.get_server(server_id)

    async def delete_server(self, server_id: int) -> None:
        await self.get_server(server_id)
        await self.store.delete_server(server_id)
        self._token_cache.clear()
        self._inbound_cache.clear()
        self._invalidate_hooks()

    def retention_days(self, settings: dict[str, Any]) -> int:
        """How many days a server with these settings keeps its messages."""
        return int(settings.get("retention_days") or self.default_retention_days)

    async def token_hints(self, server_id: int) -> list[str]:
        return [f"********-****-****-****-********{hint}" for hint in await self.store.token_hints(server_id)]

    # -- message streams ----------------------------------------------------------------------

    async def streams(self, server_id: int, *, fresh: bool = False) -> dict[str, StreamRecord]:
        cached = self._stream_cache.get(server_id)
        now = time.monotonic()
        if cached and cached[0] > now and not fresh:
            return cached[1]
        streams = {s.id: s for s in await self.store.list_streams(server_id)}
        self._stream_cache[server_id] = (now + _TOKEN_CACHE_SECONDS, streams)
        return streams

    async def sending_stream(self, server_id: int, stream_id: str) -> StreamRecord:
        """The stream a message goes to; ErrorCode 1235 / 1236 when it cannot take mail."""
        stream = (await self.streams(server_id)).get(stream_id)
        if stream is None:
            stream = (await self.streams(server_id, fresh=True)).get(stream_id)
        if stream is None or stream.archived_at is not None:
            raise ApiError(1235, f"The stream provided: '{stream_id}' does not exist on this server.")
        if stream.stream_type == "Inbound":
            raise ApiError(1236, f"Sending is not supported on the inbound stream '{stream_id}'.")
        return stream

    async def get_stream(self, server_id: int, stream_id: str) -> StreamRecord:
        stream = await self.store.get_stream(server_id, stream_id)
        if stream is None:
            raise NotFoundError(1226, f"The message stream '{stream_id}' was not found.")
        return stream

    async def create_stream(self, server_id: int, request: wire.MessageStreamRequest) -> StreamRecord:
        stream_id = (request.id or "").strip()
        if not stream_id:
            raise ApiError(1222, "A valid 'ID' is required.")
        if stream_id.startswith("pm-"):
            raise ApiError(1233, "The stream 'ID' cannot start with 'pm-'.")
        if stream_id == "all":
            raise ApiError(1237, "The stream 'ID' 'all' is reserved.")
        if not _STREAM_ID.match(stream_id):
            raise ApiError(1227, "The stream 'ID' must start with a letter and contain only lowercase letters, "
                                 "digits, '-' and '_', at most 30 characters.")
        name = self._stream_name(request.name)
        stream_type = request.message_stream_type or ""
        if stream_type not in ("Transactional", "Broadcasts"):
            raise ApiError(1221, f"Invalid 'MessageStreamType': '{stream_type}'. Use Transactional or Broadcasts.")
        description = self._stream_description(request.description)
        streams = await self.streams(server_id, fresh=True)
        if stream_id in streams:
            raise ApiError(1230, f"A stream with the ID '{stream_id}' already exists.")
        if len(streams) >= MAX_STREAMS:
            raise ApiError(1225, f"A server can have at most {MAX_STREAMS} message streams.")
        unsubscribe = self._unsubscribe(request, stream_type)
        record = StreamRecord(server_id, stream_id, name, description, stream_type, unsubscribe,
                              self.clock.micros(), None, None)
        await self.store.create_stream(record)
        self._stream_cache.pop(server_id, None)
        return record

    async def edit_stream(self, server_id: int, stream_id: str, request: wire.MessageStreamRequest
                          ) -> StreamRecord:
        record = await self.get_stream(server_id, stream_id)
        if request.id is not None and request.id != stream_id:
            raise ApiError(1222, "The stream 'ID' cannot be changed.")
        if request.name is not None:
            record.name = self._stream_name(request.name)
        if request.description is not None:
            record.description = self._stream_description(request.description)
        if request.subscription_management_configuration is not None:
            record.unsubscribe_handling = self._unsubscribe(request, record.stream_type)
        record.updated_at = self.clock.micros()
        await self.store.update_stream(record)
        self._stream_cache.pop(server_id, None)
        return record

    async def archive_stream(self, server_id: int, stream_id: str) -> StreamRecord:
        record = await self.get_stream(server_id, stream_id)
        if stream_id in ("outbound", "inbound"):
            raise ApiError(1229, "The default transactional and inbound streams cannot be archived.")
        if record.archived_at is None:
            record.archived_at = record.updated_at = self.clock.micros()
            await self.store.update_stream(record)
        self._stream_cache.pop(server_id, None)
        return record

    async def unarchive_stream(self, server_id: int, stream_id: str) -> StreamRecord:
        record = await self.get_stream(server_id, stream_id)
        if record.archived_at is None:
            raise ApiError(1232, f"The stream '{stream_id}' is not archived.")
        record.archived_at = None
        record.updated_at = self.clock.micros()
        await self.store.update_stream(record)
        self._stream_cache.pop(server_id, None)
        return record

    @staticmethod
    def _stream_name(name: str | None) -> str:
        name = (name or "").strip()
        if not name:
            raise ApiError(1223, "A valid 'Name' is required.")
        if len(name) > 100:
            raise ApiError(1224, "The stream 'Name' can be at most 100 characters.")
        return name

    @staticmethod
    def _stream_description(description: str | None) -> str | None:
        if description is None:
            return None
        if len(description) > 1000:
            raise ApiError(1231, "The stream 'Description' can be at most 1000 characters.")
        if re.search(r"<[A-Za-z/!]", description):
            raise ApiError(1234, "The stream 'Description' cannot contain HTML.")
        return description

    @staticmethod
    def _unsubscribe(request: wire.MessageStreamRequest, stream_type: str) -> str:
        config = request.subscription_management_configuration
        default = "Postmark" if stream_type == "Broadcasts" else "None"
        if config is None:
            return default
        value = {"none": "None", "postmark": "Postmark", "custom": "Custom"}.get(
            config.unsubscribe_handling_type.lower())
        if value is None:
            raise ApiError(1240, f"Invalid 'UnsubscribeHandlingType': '{config.unsubscribe_handling_type}'.")
        if value != "None" and stream_type == "Transactional":
            raise ApiError(1239, "Unsubscribe handling is not supported on transactional streams.")
        return value
