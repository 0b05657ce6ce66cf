"""Message streams of a server: list, get, create, edit, archive, unarchive (docs/postmark-api.md §8.1)."""

from __future__ import annotations

from posthouse import wire
from posthouse.client.protocol import Call, json_decoder, path_segment
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = [
    "AsyncStreams",
    "SyncStreams",
    "archive_call",
    "create_call",
    "edit_call",
    "get_call",
    "list_call",
    "unarchive_call",
]

_LIST = json_decoder(wire.MessageStreamList)
_STREAM = json_decoder(wire.MessageStream)
_ARCHIVED = json_decoder(wire.ArchivedStream)


def _path(stream_id: str) -> str:
    return f"/message-streams/{path_segment(stream_id)}"


def list_call(stream_type: str = "All", include_archived: bool = False) -> Call[wire.MessageStreamList]:
    params = {"MessageStreamType": stream_type, "IncludeArchivedStreams": "true" if include_archived else "false"}
    return Call("GET", "/message-streams", _LIST, params=params)


def get_call(stream_id: str) -> Call[wire.MessageStream]:
    return Call("GET", _path(stream_id), _STREAM)


def create_call(stream: wire.MessageStreamRequest) -> Call[wire.MessageStream]:
    # A retry after a lost answer would meet its own stream (ErrorCode 1230): not replayable.
    return Call("POST", "/message-streams", _STREAM, body=wire.encoder.encode(stream), replayable=False)


def edit_call(stream_id: str, changes: wire.MessageStreamRequest) -> Call[wire.MessageStream]:
    return Call("PATCH", _path(stream_id), _STREAM, body=wire.encoder.encode(changes))


def archive_call(stream_id: str) -> Call[wire.ArchivedStream]:
    return Call("POST", _path(stream_id) + "/archive", _ARCHIVED, replayable=False)


def unarchive_call(stream_id: str) -> Call[wire.MessageStream]:
    return Call("POST", _path(stream_id) + "/unarchive", _STREAM, replayable=False)


class AsyncStreams(AsyncResource):
    """`client.streams` of the async `ServerClient`."""

    async def list(self, stream_type: str = "All", *, include_archived: bool = False) -> wire.MessageStreamList:
        """The server's streams; `stream_type` is All, Transactional, Broadcasts or Inbound."""
        return await self._http.run(list_call(stream_type, include_archived))

    async def get(self, stream_id: str) -> wire.MessageStream:
        return await self._http.run(get_call(stream_id))

    async def create(self, stream: wire.MessageStreamRequest) -> wire.MessageStream:
        """A new stream: `id`, `name` and `message_stream_type` (Transactional or Broadcasts) are required."""
        return await self._http.run(create_call(stream))

    async def edit(self, stream_id: str, changes: wire.MessageStreamRequest) -> wire.MessageStream:
        """Change `name`, `description` or `subscription_management_configuration`; other fields stay."""
        return await self._http.run(edit_call(stream_id, changes))

    async def archive(self, stream_id: str) -> wire.ArchivedStream:
        """Archive a stream; it is purged on `expected_purge_date` unless unarchived before."""
        return await self._http.run(archive_call(stream_id))

    async def unarchive(self, stream_id: str) -> wire.MessageStream:
        return await self._http.run(unarchive_call(stream_id))


class SyncStreams(SyncResource):
    """`client.streams` of the sync `ServerClient`."""

    def list(self, stream_type: str = "All", *, include_archived: bool = False) -> wire.MessageStreamList:
        """The server's streams; `stream_type` is All, Transactional, Broadcasts or Inbound."""
        return self._http.run(list_call(stream_type, include_archived))

    def get(self, stream_id: str) -> wire.MessageStream:
        return self._http.run(get_call(stream_id))

    def create(self, stream: wire.MessageStreamRequest) -> wire.MessageStream:
        """A new stream: `id`, `name` and `message_stream_type` (Transactional or Broadcasts) are required."""
        return self._http.run(create_call(stream))

    def edit(self, stream_id: str, changes: wire.MessageStreamRequest) -> wire.MessageStream:
        """Change `name`, `description` or `subscription_management_configuration`; other fields stay."""
        return self._http.run(edit_call(stream_id, changes))

    def archive(self, stream_id: str) -> wire.ArchivedStream:
        """Archive a stream; it is purged on `expected_purge_date` unless unarchived before."""
        return self._http.run(archive_call(stream_id))

    def unarchive(self, stream_id: str) -> wire.MessageStream:
        return self._http.run(unarchive_call(stream_id))
