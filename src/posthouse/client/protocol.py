"""The Postmark HTTP protocol without I/O: a call as data (`Call`), and an answer turned into a value or an error.

Both I/O layers (`posthouse.client.http`) run the same `Call`s and decode with the same functions, so the
async and sync clients cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Generic, TypeVar
from urllib.parse import quote

import msgspec

from posthouse import wire
from posthouse.client.errors import (
    APIError,
    InactiveRecipientsError,
    InvalidRequestError,
    InvalidTokenError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)

__all__ = [
    "Call",
    "acknowledged",
    "decode_answer",
    "error_from_answer",
    "error_from_result",
    "format_instant",
    "json_decoder",
    "parse_inactive_recipients",
    "parse_retry_after",
    "path_segment",
    "scheduled",
]

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

_ERROR = msgspec.json.Decoder(wire.ErrorResponse)
# Postmark's texts (docs/postmark-api.md §2.6): "... Found inactive addresses: a@x.com, b@y.com. Inactive recipients
# are ..." for a refusal, "Message OK, but will not deliver to these inactive addresses: a@x.com." for a partial one.
_INACTIVE = re.compile(r"(?:Found inactive addresses|these inactive addresses):\s*(.+?)\.?(?=\s+Inactive|\s*$)", re.S)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API call as data: what to send, how to read a successful answer, and whether a retry is safe.

    `replayable` (see `posthouse.client.retries`) is True when repeating the call cannot do its work twice.
    """

    method: str
    path: str
    decode: Callable[[bytes], T]
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    idempotency_key: str | None = None
    replayable: bool = True

    @property
    def headers(self) -> dict[str, str]:
        headers = {}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers


def json_decoder(kind: type[T]) -> Callable[[bytes], T]:
    """A decoder of a JSON answer into `kind` (a wire Struct, or a list of them)."""
    return msgspec.json.Decoder(kind).decode


def path_segment(value: str | int) -> str:
    """An id as one path segment: a `/` or `..` in it cannot reach another endpoint."""
    text = str(value)
    if not text or text in (".", ".."):
        raise ValueError(f"Invalid id: {text!r}")
    return quote(text, safe="")


def format_instant(value: datetime | date | str) -> str:
    """A time for the API: ISO 8601, kept as given when a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return value.isoformat()


def scheduled(request: S, send_at: datetime | str | None) -> S:
    """`request` (a send: one email, a template email, a bulk request) with its `send_at` set, a Posthouse
    extension; None keeps the request's own. A naive datetime is refused: "9:30" means nothing without a zone."""
    if send_at is None:
        return request
    if isinstance(send_at, datetime) and send_at.tzinfo is None:
        raise ValueError("send_at needs a time zone (datetime.now(UTC) + ...), or an ISO 8601 string with one.")
    return msgspec.structs.replace(request, send_at=format_instant(send_at))


def acknowledged(content: bytes) -> None:
    """The answer of a call that returns only `{ErrorCode: 0, Message}` (a delete, a redelivery): checked,
    nothing to return."""
    _ERROR.decode(content)


def decode_answer(call: Call[T], status: int, headers: Mapping[str, str], content: bytes) -> T:
    """The value of a 2xx answer, or the typed error for any other."""
    if 200 <= status < 300:
        try:
            return call.decode(content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UnexpectedResponseError(
                f"Unexpected answer to {call.method} {call.path}: {exc}",
                http_status=status,
                request_id=_header(headers, "x-request-id"),
            ) from None
    raise error_from_answer(status, headers, content)


def error_from_answer(status: int, headers: Mapping[str, str], content: bytes) -> APIError:
    """The error for an HTTP error answer; the status decides first, then Postmark's ErrorCode."""
    try:
        body = _ERROR.decode(content)
        code, message = body.error_code, body.message
    except (msgspec.DecodeError, msgspec.ValidationError):
        code, message = 0, content[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
    request_id = _header(headers, "x-request-id")
    if status == 429:
        return RateLimitedError(
            message,
            retry_after=parse_retry_after(_header(headers, "retry-after")),
            error_code=code,
            request_id=request_id,
        )
    if status >= 500:
        return ServerError(message, error_code=code, http_status=status, request_id=request_id)
    if status < 400:
        return UnexpectedResponseError(message, error_code=code, http_status=status, request_id=request_id)
    return _client_error(status, code, message, request_id)


def error_from_result(result: wire.SendResponse) -> APIError:
    """The error a failed batch item stands for (Postmark answers those inside an HTTP 200)."""
    return _client_error(200, result.error_code, result.message, None)


def _client_error(status: int, code: int, message: str, request_id: str | None) -> APIError:
    if status == 401 or code == 10:
        return InvalidTokenError(message, error_code=code, http_status=status, request_id=request_id)
    if code == 406:
        return InactiveRecipientsError(
            message,
            inactive_recipients=parse_inactive_recipients(message),
            error_code=code,
            http_status=status,
            request_id=request_id,
        )
    return InvalidRequestError(message, error_code=code, http_status=status, request_id=request_id)


def parse_inactive_recipients(message: str) -> list[str]:
    """The addresses named in Postmark's inactive-recipient text, in order; [] when there are none."""
    found = _INACTIVE.search(message)
    if found is None:
        return []
    return [address for part in found.group(1).split(",") if (address := part.strip())]


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx.Headers is case-insensitive; a plain dict (tests, other callers) may not be.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value
