"""Bulk sending: one request for many recipients, expanded by the server in the background, and its
progress (docs/postmark-api.md §2.5).

A bulk send is replayable as the other sends are: one `Idempotency-Key` on every attempt.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from posthouse import wire
from posthouse.client.protocol import Call, json_decoder, path_segment, scheduled
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = ["AsyncBulk", "SyncBulk", "get_call", "list_call", "send_call"]

_ACCEPTED = json_decoder(wire.BulkAccepted)
_STATUS = json_decoder(wire.BulkStatus)
_LIST = json_decoder(wire.BulkList)


def send_call(
    request: wire.BulkRequest, *, send_at: datetime | str | None = None, idempotency_key: str | None = None
) -> Call[wire.BulkAccepted]:
    return Call(
        "POST",
        "/email/bulk",
        _ACCEPTED,
        body=wire.encoder.encode(scheduled(request, send_at)),
        idempotency_key=idempotency_key or str(uuid.uuid4()),
    )


def get_call(bulk_id: str) -> Call[wire.BulkStatus]:
    return Call("GET", f"/email/bulk/{path_segment(bulk_id)}", _STATUS)


def list_call(count: int = 100, pagination_key: str | None = None) -> Call[wire.BulkList]:
    params = {"count": str(count)}
    if pagination_key is not None:
        params["paginationkey"] = pagination_key
    return Call("GET", "/email/bulk", _LIST, params=params)


class AsyncBulk(AsyncResource):
    """`client.bulk` of the async `ServerClient`."""

    async def send(
        self, request: wire.BulkRequest, *, send_at: datetime | str | None = None, idempotency_key: str | None = None
    ) -> wire.BulkAccepted:
        """Accept a bulk send: a shared body (or template) and up to 50 000 `messages`, one per recipient with
        its own `template_model`. The answer's `id` is for `get`; the server sends in the background."""
        return await self._http.run(send_call(request, send_at=send_at, idempotency_key=idempotency_key))

    async def get(self, bulk_id: str) -> wire.BulkStatus:
        """How far a bulk send is: `status` (Accepted, Processing, Completed or Failed), counts and percentage."""
        return await self._http.run(get_call(bulk_id))

    async def list(self, count: int = 100, *, pagination_key: str | None = None) -> wire.BulkList:
        """The server's bulk sends, newest first; pass the answer's `pagination_key` for the next page
        (None on the last)."""
        return await self._http.run(list_call(count, pagination_key))


class SyncBulk(SyncResource):
    """`client.bulk` of the sync `ServerClient`."""

    def send(
        self, request: wire.BulkRequest, *, send_at: datetime | str | None = None, idempotency_key: str | None = None
    ) -> wire.BulkAccepted:
        """Accept a bulk send: a shared body (or template) and up to 50 000 `messages`, one per recipient with
        its own `template_model`. The answer's `id` is for `get`; the server sends in the background."""
        return self._http.run(send_call(request, send_at=send_at, idempotency_key=idempotency_key))

    def get(self, bulk_id: str) -> wire.BulkStatus:
        """How far a bulk send is: `status` (Accepted, Processing, Completed or Failed), counts and percentage."""
        return self._http.run(get_call(bulk_id))

    def list(self, count: int = 100, *, pagination_key: str | None = None) -> wire.BulkList:
        """The server's bulk sends, newest first; pass the answer's `pagination_key` for the next page
        (None on the last)."""
        return self._http.run(list_call(count, pagination_key))
