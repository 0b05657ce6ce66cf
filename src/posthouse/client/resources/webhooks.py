"""Webhooks of a server: list, get, create, edit, delete (docs/postmark-api.md §7.1), and, as Posthouse extensions,
each webhook's delivery log and redelivery of one post."""

from __future__ import annotations

from posthouse import wire
from posthouse.client.protocol import Call, acknowledged, json_decoder, path_segment
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = [
    "AsyncWebhooks",
    "SyncWebhooks",
    "create_call",
    "delete_call",
    "deliveries_call",
    "edit_call",
    "get_call",
    "list_call",
    "redeliver_call",
]

_LIST = json_decoder(wire.WebhookList)
_WEBHOOK = json_decoder(wire.Webhook)
_DELIVERIES = json_decoder(wire.WebhookDeliveryList)


def _path(webhook_id: int) -> str:
    return f"/webhooks/{path_segment(webhook_id)}"


def list_call(message_stream: str | None = None) -> Call[wire.WebhookList]:
    params = {} if message_stream is None else {"messagestream": message_stream}
    return Call("GET", "/webhooks", _LIST, params=params)


def get_call(webhook_id: int) -> Call[wire.Webhook]:
    return Call("GET", _path(webhook_id), _WEBHOOK)


def create_call(webhook: wire.WebhookRequest) -> Call[wire.Webhook]:
    # A retry after a lost answer would create a second webhook, and every event would be posted twice.
    return Call("POST", "/webhooks", _WEBHOOK, body=wire.encoder.encode(webhook), replayable=False)


def edit_call(webhook_id: int, changes: wire.WebhookRequest) -> Call[wire.Webhook]:
    # PUT sets the given fields to the given values: doing it twice leaves the same state.
    return Call("PUT", _path(webhook_id), _WEBHOOK, body=wire.encoder.encode(changes))


def delete_call(webhook_id: int) -> Call[None]:
    # A retry after a lost answer would report the deleted webhook as missing: not replayable.
    return Call("DELETE", _path(webhook_id), acknowledged, replayable=False)


def deliveries_call(webhook_id: int, count: int = 100, offset: int = 0) -> Call[wire.WebhookDeliveryList]:
    params = {"count": str(count), "offset": str(offset)}
    return Call("GET", _path(webhook_id) + "/deliveries", _DELIVERIES, params=params)


def redeliver_call(webhook_id: int, delivery_id: int) -> Call[None]:
    # A retry after a lost answer would queue the post once more: not replayable.
    path = f"{_path(webhook_id)}/deliveries/{path_segment(delivery_id)}/redeliver"
    return Call("POST", path, acknowledged, replayable=False)


class AsyncWebhooks(AsyncResource):
    """`client.webhooks` of the async `ServerClient`."""

    async def list(self, message_stream: str | None = None) -> wire.WebhookList:
        """The server's webhooks, of one stream or of all."""
        return await self._http.run(list_call(message_stream))

    async def get(self, webhook_id: int) -> wire.Webhook:
        return await self._http.run(get_call(webhook_id))

    async def create(self, webhook: wire.WebhookRequest) -> wire.Webhook:
        """A new webhook (`url` required; `message_stream` is `outbound` when not given). The answer's `secret`
        (whsec_…) signs every post with Standard Webhooks headers: keep it to verify them."""
        return await self._http.run(create_call(webhook))

    async def edit(self, webhook_id: int, changes: wire.WebhookRequest) -> wire.Webhook:
        """Change the url, auth, headers or triggers set in `changes`; the rest stays."""
        return await self._http.run(edit_call(webhook_id, changes))

    async def delete(self, webhook_id: int) -> None:
        await self._http.run(delete_call(webhook_id))

    async def deliveries(self, webhook_id: int, count: int = 100, offset: int = 0) -> wire.WebhookDeliveryList:
        """The webhook's posts, newest first, each with its `state` and the `history` of its attempts."""
        return await self._http.run(deliveries_call(webhook_id, count, offset))

    async def redeliver(self, webhook_id: int, delivery_id: int) -> None:
        """Queue one post again now, whatever its state, with the same `webhook-id` header."""
        await self._http.run(redeliver_call(webhook_id, delivery_id))


class SyncWebhooks(SyncResource):
    """`client.webhooks` of the sync `ServerClient`."""

    def list(self, message_stream: str | None = None) -> wire.WebhookList:
        """The server's webhooks, of one stream or of all."""
        return self._http.run(list_call(message_stream))

    def get(self, webhook_id: int) -> wire.Webhook:
        return self._http.run(get_call(webhook_id))

    def create(self, webhook: wire.WebhookRequest) -> wire.Webhook:
        """A new webhook (`url` required; `message_stream` is `outbound` when not given). The answer's `secret`
        (whsec_…) signs every post with Standard Webhooks headers: keep it to verify them."""
        return self._http.run(create_call(webhook))

    def edit(self, webhook_id: int, changes: wire.WebhookRequest) -> wire.Webhook:
        """Change the url, auth, headers or triggers set in `changes`; the rest stays."""
        return self._http.run(edit_call(webhook_id, changes))

    def delete(self, webhook_id: int) -> None:
        self._http.run(delete_call(webhook_id))

    def deliveries(self, webhook_id: int, count: int = 100, offset: int = 0) -> wire.WebhookDeliveryList:
        """The webhook's posts, newest first, each with its `state` and the `history` of its attempts."""
        return self._http.run(deliveries_call(webhook_id, count, offset))

    def redeliver(self, webhook_id: int, delivery_id: int) -> None:
        """Queue one post again now, whatever its state, with the same `webhook-id` header."""
        self._http.run(redeliver_call(webhook_id, delivery_id))
