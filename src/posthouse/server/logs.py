"""Logs: one stdlib `logging` pipeline for every line the process writes, rendered for people or as JSON.

Every module logs through the standard library (`logging.getLogger("posthouse.…")`), and so do uvicorn,
asyncpg and httpx; `configure_logging` puts one handler on the root logger with one of two formatters:

- `HumanFormatter`: `2025-01-31 12:00:00.123 INFO  posthouse.http  http request method=POST status=200 …`,
  the level coloured when the stream is a terminal;
- `JsonFormatter`: one JSON object per line, `{"ts", "level", "logger", "event", …fields}`, for a log shipper.

Why the stdlib and not structlog (docs/architecture.md §6a): third-party libraries and the existing call sites
already log through `logging`, so one handler gives every line the same shape; structlog would either be a
second pipeline beside it or run through `ProcessorFormatter`. What logging and metrics cost on the send path
is measured by bench/observe_cost.py.

Structured fields travel in `extra={"fields": {...}}` (one key, so a field named `name` or `filename` cannot
collide with a LogRecord attribute); `log_event` builds that. A field whose name says it holds a secret
(token, password, authorization, secret) is never rendered, whatever its value, and `redact_url` takes user
names, passwords and query strings out of a URL before it is logged.

`RepeatedFailures` is the rate limiter for destinations that keep failing (a relay, an MX host, a webhook
URL): the first failure is a warning at once, later ones at most one line per interval and destination, with
the number of failures that were not logged in between; the first success after failures says so.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import msgspec

# The request id of the HTTP request being handled (api/observing.py), added to every line logged meanwhile.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("posthouse_request_id", default=None)

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_NAME = re.compile(r"token|password|passwd|secret|authorization|api_?key|credential", re.IGNORECASE)
REDACTED = "[redacted]"
# Characters that need no quoting in a human line's `key=value`; anything else is written as a JSON string.
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-\[\]<>,]+")
_COLOURS = {"DEBUG": "\x1b[2m", "INFO": "\x1b[32m", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m",
            "CRITICAL": "\x1b[1;31m"}
_RESET = "\x1b[0m"
_encoder = msgspec.json.Encoder()


def log_event(logger: logging.Logger, level: int, event: str, /, **fields: Any) -> None:
    """Log `event` with structured `fields` (nothing is built when the level is off)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def redact_url(url: str) -> str:
    """`scheme://host[:port]/path` of a URL: no user name, password, query or fragment (they may hold secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "[unparseable URL]"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = record.__dict__.get("fields")
    return fields if isinstance(fields, Mapping) else {}


def _safe(key: str, value: Any) -> Any:
    return REDACTED if _SECRET_NAME.search(key) else value


def _timestamp(created: float, sep: str) -> str:
    seconds = int(created)
    return time.strftime(f"%Y-%m-%d{sep}%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, event, request_id (when in a request), the
    record's fields, and exception (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": _timestamp(record.created, "T") + "Z", "level": record.levelname.lower(),
                                 "logger": record.name, "event": record.getMessage()}
        request_id = record.__dict__.get("request_id") or REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in _fields(record).items():
            if key not in entry:
                entry[key] = _safe(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = record.stack_info
        try:
            return _encoder.encode(entry).decode()
        except (TypeError, msgspec.EncodeError):  # a field msgspec cannot encode: written as its repr
            return _encoder.encode({k: v if isinstance(v, str | int | float | bool | None) else repr(v)
                                    for k, v in entry.items()}).decode()


class HumanFormatter(logging.Formatter):
    """`2025-01-31 12:00:00.123 INFO  posthouse.api  event key=value …`, the level coloured on a terminal."""

    def __init__(self, *, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname
        shown = f"{_COLOURS.get(level, '')}{level:<7}{_RESET}" if self.colour else f"{level:<7}"
        message = record.getMessage()
        if "\n" in message or "\r" in message:  # one event, one line: text from a peer cannot forge another
            message = message.replace("\r", "\\r").replace("\n", "\\n")
        parts = [_timestamp(record.created, " "), shown, record.name + " ", message]
        fields = dict(_fields(record))
        request_id = record.__dict__.get("request_id") or REQUEST_ID.get()
        if request_id is not None and "request_id" not in fields:
            fields["request_id"] = request_id
        for key, value in fields.items():
            parts.append(f"{key}={_human_value(_safe(key, value))}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            line += "\n" + record.stack_info
        return line


def _human_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 10 else f"{value:.3g}"
    text = str(value)
    return text if _BARE.fullmatch(text) else _encoder.encode(text).decode()


def configure_logging(level: str = "info", log_format: str = "human", stream: TextIO | None = None) -> None:
    """One handler on the root logger, writing to `stream` (stderr) in `log_format`; replaces any before it."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        isatty = getattr(stream, "isatty", None)
        handler.setFormatter(HumanFormatter(colour=bool(isatty and isatty())))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    # Libraries that are chatty at INFO: their lines are for debugging Posthouse, not for running it.
    for name in ("httpx", "httpcore", "asyncio"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))


class RepeatedFailures:
    """Warnings about destinations that keep failing, at most one line per destination per `interval`.

    `failed()` logs the first failure of a destination at once; the next ones within `interval` are only
    counted, and the first after it is logged with `suppressed=N` (failures not logged since the last line).
    `succeeded()` logs once that a failing destination works again. At most `max_destinations` are
    remembered (the least recently failed are forgotten), so a flood of distinct destinations costs bounded
    memory; lines about them are never more than one per failure.
    """

    def __init__(self, logger: logging.Logger, *, interval: float = 60.0, max_destinations: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.max_destinations = max_destinations
        self.clock = clock
        # destination → [when last logged, failures not logged since, failures in this run]
        self._failing: OrderedDict[str, list[float]] = OrderedDict()

    def failed(self, kind: str, destination: str, reason: str, /, **fields: Any) -> None:
        now = self.clock()
        state = self._failing.get(destination)
        if state is None:
            state = self._failing[destination] = [now, 0.0, 1.0]
            while len(self._failing) > self.max_destinations:
                self._failing.popitem(last=False)
            log_event(self.logger, logging.WARNING, f"{kind} failing", destination=destination, reason=reason,
                      **fields)
            return
        self._failing.move_to_end(destination)
        state[2] += 1
        if now - state[0] < self.interval:
            state[1] += 1
            return
        suppressed = int(state[1])
        state[0], state[1] = now, 0.0
        log_event(self.logger, logging.WARNING, f"{kind} still failing", destination=destination, reason=reason,
                  failures=int(state[2]), suppressed=suppressed, **fields)

    def succeeded(self, kind: str, destination: str) -> None:
        if not self._failing:  # the hot path: nothing is failing
            return
        state = self._failing.pop(destination, None)
        if state is not None:
            log_event(self.logger, logging.INFO, f"{kind} recovered", destination=destination,
                      failures=int(state[2]))
