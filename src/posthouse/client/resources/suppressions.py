"""The suppression list of a message stream: dump, suppress, lift (docs/postmark-api.md §8.2)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TypedDict, Unpack

from posthouse import wire
from posthouse.client.protocol import Call, format_instant, json_decoder, path_segment
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = ["AsyncSuppressions", "SuppressionSearch", "SyncSuppressions", "create_call", "delete_call", "dump_call"]

_DUMP = json_decoder(wire.SuppressionDump)
_RESULTS = json_decoder(wire.SuppressionResults)


class SuppressionSearch(TypedDict, total=False):
    """The filters of `suppressions.dump` (docs/postmark-api.md §8.2), all optional."""

    suppression_reason: str  # HardBounce, SpamComplaint or ManualSuppression
    origin: str  # Recipient, Customer or Admin
    email_address: str
    from_date: datetime | date | str  # inclusive
    to_date: datetime | date | str


def _path(stream_id: str) -> str:
    return f"/message-streams/{path_segment(stream_id)}/suppressions"


def _body(addresses: Sequence[str]) -> bytes:
    if isinstance(addresses, str):
        # A lone string is a sequence of characters: one suppression per letter is never what was meant.
        raise TypeError("addresses must be a list of addresses, not one string.")
    request = wire.SuppressionRequest(suppressions=[wire.SuppressionAddress(email_address=a) for a in addresses])
    return wire.encoder.encode(request)


def dump_call(stream_id: str, **search: Unpack[SuppressionSearch]) -> Call[wire.SuppressionDump]:
    params = {
        name: value
        for name, value in (
            ("suppressionreason", search.get("suppression_reason")),
            ("origin", search.get("origin")),
            ("emailaddress", search.get("email_address")),
        )
        if value is not None
    }
    for name, moment in (("fromdate", search.get("from_date")), ("todate", search.get("to_date"))):
        if moment is not None:
            params[name] = format_instant(moment)
    return Call("GET", _path(stream_id) + "/dump", _DUMP, params=params)


def create_call(stream_id: str, addresses: Sequence[str]) -> Call[wire.SuppressionResults]:
    # Suppressing a suppressed address leaves it as it was: replayable.
    return Call("POST", _path(stream_id), _RESULTS, body=_body(addresses))


def delete_call(stream_id: str, addresses: Sequence[str]) -> Call[wire.SuppressionResults]:
    # Lifting a lifted suppression changes nothing: replayable.
    return Call("POST", _path(stream_id) + "/delete", _RESULTS, body=_body(addresses))


class AsyncSuppressions(AsyncResource):
    """`client.suppressions` of the async `ServerClient`."""

    async def dump(self, stream_id: str, **search: Unpack[SuppressionSearch]) -> wire.SuppressionDump:
        """Every suppressed address of a stream, newest first."""
        return await self._http.run(dump_call(stream_id, **search))

    async def create(self, stream_id: str, addresses: Sequence[str]) -> wire.SuppressionResults:
        """Suppress up to 50 addresses on a stream; one result per address, in order (`status` Suppressed or
        Failed): an invalid address does not raise."""
        return await self._http.run(create_call(stream_id, addresses))

    async def delete(self, stream_id: str, addresses: Sequence[str]) -> wire.SuppressionResults:
        """Lift the suppression of up to 50 addresses (`status` Deleted or Failed); a spam complaint's stays."""
        return await self._http.run(delete_call(stream_id, addresses))


class SyncSuppressions(SyncResource):
    """`client.suppressions` of the sync `ServerClient`."""

    def dump(self, stream_id: str, **search: Unpack[SuppressionSearch]) -> wire.SuppressionDump:
        """Every suppressed address of a stream, newest first."""
        return self._http.run(dump_call(stream_id, **search))

    def create(self, stream_id: str, addresses: Sequence[str]) -> wire.SuppressionResults:
        """Suppress up to 50 addresses on a stream; one result per address, in order (`status` Suppressed or
        Failed): an invalid address does not raise."""
        return self._http.run(create_call(stream_id, addresses))

    def delete(self, stream_id: str, addresses: Sequence[str]) -> wire.SuppressionResults:
        """Lift the suppression of up to 50 addresses (`status` Deleted or Failed); a spam complaint's stays."""
        return self._http.run(delete_call(stream_id, addresses))
