"""A SpamAssassin spamd client (its SPAMC/1.5 protocol, as spamc speaks it), for scoring inbound mail.

One `SYMBOLS` request per message: spamd answers its verdict (`Spam: True ; 7.2 / 5.0`) and the names of the
tests that hit. Optional and never in the way: no spamd configured, one that is down, slow or answering
nonsense, or a message above the size limit, all mean "not scored" (None, and a log line), never a failure
of the message (docs/postmark-api.md §10: Postmark adds X-Spam-Status, X-Spam-Score and X-Spam-Tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass

__all__ = ["SpamChecker", "SpamVerdict"]

log = logging.getLogger("posthouse.inbound")
_STATUS_LINE = re.compile(rb"^SPAMD/\d+\.\d+\s+(\d+)\s+(\S+)")
_SPAM_HEADER = re.compile(rb"^Spam:\s*(True|False|Yes|No)\s*;\s*(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)\s*$",
                          re.IGNORECASE | re.MULTILINE)
_MAX_ANSWER = 64 * 1024


@dataclass(frozen=True, slots=True)
class SpamVerdict:
    is_spam: bool  # spamd's own verdict (its required_score)
    score: float
    required: float
    tests: tuple[str, ...]

    def headers(self) -> list[tuple[str, str]]:
        """The headers Postmark adds to inbound mail it scored."""
        return [("X-Spam-Status", "Yes" if self.is_spam else "No"), ("X-Spam-Score", f"{self.score:g}"),
                ("X-Spam-Tests", ",".join(self.tests))]


class SpamChecker:
    def __init__(self, host: str, port: int, *, timeout: float = 10.0, max_size: int = 512_000) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_size = max_size

    async def check(self, message: bytes) -> SpamVerdict | None:
        """spamd's verdict on `message`; None when it was not scored (too large, or spamd failed)."""
        if len(message) > self.max_size:
            log.info("inbound message of %d bytes not sent to spamd (inbound_spamd_max_size %d)", len(message),
                     self.max_size)
            return None
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._exchange(message)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.warning("spamd at %s:%d did not score a message (%s); it goes on unscored", self.host, self.port,
                        exc or type(exc).__name__)
            return None
        verdict = _parse(answer)
        if verdict is None:
            log.warning("spamd at %s:%d answered something that is not a verdict (%r); the message goes on "
                        "unscored", self.host, self.port, answer[:200])
        return verdict

    async def _exchange(self, message: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(message))
            writer.write(message)
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
            answer = await reader.read(_MAX_ANSWER)
            while chunk := await reader.read(_MAX_ANSWER - len(answer)) if len(answer) < _MAX_ANSWER else b"":
                answer += chunk
            return answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):  # the peer hung up first; nothing is left to do with it
                await writer.wait_closed()


def _parse(answer: bytes) -> SpamVerdict | None:
    status = _STATUS_LINE.match(answer)
    if status is None or status.group(1) != b"0":  # EX_OK
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    spam = _SPAM_HEADER.search(head)
    if spam is None:
        return None
    tests = tuple(t.strip() for t in body.decode("ascii", "replace").replace("\r\n", "").split(",") if t.strip())
    return SpamVerdict(is_spam=spam.group(1).lower() in (b"true", b"yes"), score=float(spam.group(2)),
                       required=float(spam.group(3)), tests=tests)
