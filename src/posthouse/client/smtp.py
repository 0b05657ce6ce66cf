"""`SMTPTransport`: the same `Email` sent to any SMTP server with the stdlib's smtplib.

    SMTPTransport("smtp+starttls://user:pass@host:587")   STARTTLS required (port 587 by default)
    SMTPTransport("smtps://user:pass@host:465")           TLS from the first byte (RFC 8314)
    SMTPTransport("smtp://host:25")                       no TLS

Query parameters: `cafile=PATH` trusts that CA (Posthouse's self-signed certificate, for one), `timeout=SECONDS`,
`keepalive=1` (as the `keep_alive` argument).

By default each send is one connection. With `keep_alive`, up to 4 idle connections are kept for the next
sends (close the transport when done); a kept connection the server has dropped meanwhile is noticed at MAIL,
before anything of the message was sent, and the message goes over a fresh one. The async `send_async` runs a
send in a worker thread. Recipients are sent all or nothing: if the server refuses any of them, the transaction
is reset before DATA and `SMTPRefusedError` lists them. smtplib's exceptions become the SDK's in one place,
`map_smtplib_exceptions`.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

from posthouse import wire
from posthouse.client.errors import (
    ConfigurationError,
    ConnectionFailedError,
    RequestTimeoutError,
    SMTPRefusedError,
)
from posthouse.client.mime import build_message, envelope_of
from posthouse.client.protocol import scheduled

__all__ = ["SMTPTransport", "map_smtplib_exceptions"]

_DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
_MAX_IDLE = 4  # connections kept with keep_alive
_QUEUED_AS = re.compile(r"queued as <?([^\s>]+)", re.I)  # Posthouse: "2.0.0 Ok: queued as <MessageID>"


@contextmanager
def map_smtplib_exceptions() -> Iterator[None]:
    """smtplib's and the socket's exceptions as the SDK's."""
    try:
        yield
    except smtplib.SMTPNotSupportedError as exc:
        raise ConfigurationError(f"The SMTP server lacks what the URL asks for: {exc}") from exc
    except smtplib.SMTPServerDisconnected as exc:
        raise ConnectionFailedError(f"The SMTP server closed the connection: {exc}", request_sent=True) from exc
    except smtplib.SMTPResponseException as exc:
        message = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc)
        raise SMTPRefusedError(exc.smtp_code, message) from exc
    except smtplib.SMTPException as exc:
        # E.g. "No suitable authentication method found": the server and the URL do not fit together.
        raise ConfigurationError(f"SMTP: {exc}") from exc
    except TimeoutError as exc:
        raise RequestTimeoutError(f"The SMTP server did not answer in time: {exc}", request_sent=True) from exc
    except (ConnectionRefusedError, socket.gaierror) as exc:
        raise ConnectionFailedError(f"Could not connect to the SMTP server: {exc}", request_sent=False) from exc
    except ssl.SSLError as exc:
        raise ConnectionFailedError(f"TLS with the SMTP server failed: {exc}", request_sent=False) from exc
    except OSError as exc:
        raise ConnectionFailedError(f"The SMTP connection failed: {exc}", request_sent=True) from exc


class SMTPTransport:
    """Sends `Email`s over SMTP; see the module docstring for the URL forms.

    `ssl_context` replaces the default (system CAs, or `cafile=` from the URL); `timeout` (seconds) is per
    socket operation; `local_hostname` is the name given in EHLO.
    """

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float | None = None,
        local_hostname: str | None = None,
        keep_alive: bool | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ConfigurationError(f"Not an SMTP URL (smtp://, smtp+starttls://, smtps://): {_redacted(url)}")
        query = parse_qs(parts.query)
        self.security = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "tls"}[parts.scheme]
        self.host = parts.hostname
        try:
            self.port = parts.port or _DEFAULT_PORTS[parts.scheme]
            self.timeout = timeout if timeout is not None else float(query.get("timeout", ["30"])[0])
        except ValueError as exc:
            raise ConfigurationError(f"Invalid SMTP URL {_redacted(url)}: {exc}") from None
        self.username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else ""
        cafile = query.get("cafile", [None])[0]
        self._ssl_context = ssl_context
        if self._ssl_context is None and self.security != "none":
            self._ssl_context = ssl.create_default_context(cafile=cafile)
        self.local_hostname = local_hostname
        self.keep_alive = keep_alive if keep_alive is not None else query.get("keepalive", ["0"])[0] in ("1", "true")
        self._idle: list[smtplib.SMTP] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        scheme = {"none": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}[self.security]
        return f"SMTPTransport('{scheme}://{user}{self.host}:{self.port}')"

    def send(self, email: wire.EmailRequest) -> wire.SendResponse:
        """Send one message; the answer's `message_id` is the server's queue id when it names one
        (Posthouse names the MessageID), else the message's Message-ID."""
        if email.send_at is not None:
            # As the API's SendAt: an aware datetime or an ISO 8601 string, sent as X-Posthouse-Send-At (a
            # Posthouse extension; any other server delivers at once and keeps the header).
            email = scheduled(email, email.send_at)
        message = build_message(email)
        sender, recipients = envelope_of(email)
        data = message.as_bytes()
        with map_smtplib_exceptions():
            reply = self._deliver(sender, recipients, data)
        queued = _QUEUED_AS.search(reply)
        message_id = queued.group(1) if queued else str(message["Message-ID"]).strip("<> ")
        return wire.SendResponse(
            to=email.to or "",
            submitted_at=datetime.now(UTC).isoformat(),
            message_id=message_id,
            error_code=0,
            message=reply,
        )

    async def send_async(self, email: wire.EmailRequest) -> wire.SendResponse:
        """`send` in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.send, email)

    def close(self) -> None:
        """QUIT the connections kept for reuse (none without `keep_alive`)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for smtp in idle:
            _quit(smtp)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> SMTPTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deliver(self, sender: str, recipients: list[str], data: bytes) -> str:
        """Submit over a kept connection if there is one that still works, else over a new one."""
        while True:
            with self._lock:
                smtp = self._idle.pop() if self._idle else None
            if smtp is None:
                break
            try:
                return self._finish(smtp, self._submit(smtp, sender, recipients, data, reused=True))
            except _Dropped:
                smtp.close()  # the server let it go while it was idle; nothing of this message was sent
            except BaseException:
                smtp.close()
                raise
        smtp = self._connect()
        try:
            return self._finish(smtp, self._submit(smtp, sender, recipients, data))
        except BaseException:
            smtp.close()
            raise

    def _finish(self, smtp: smtplib.SMTP, reply: str) -> str:
        """Keep the connection for the next send, or end it."""
        with self._lock:
            if self.keep_alive and len(self._idle) < _MAX_IDLE:
                self._idle.append(smtp)
                return reply
        _quit(smtp)
        return reply

    def _connect(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self._ssl_context,
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                # smtplib raises SMTPNotSupportedError when STARTTLS is not offered: never fall back to plain text.
                smtp.starttls(context=self._ssl_context)
                smtp.ehlo()
            if self.username is not None:
                smtp.login(self.username, self._password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    @staticmethod
    def _submit(smtp: smtplib.SMTP, sender: str, recipients: list[str], data: bytes, *, reused: bool = False) -> str:
        """MAIL, every RCPT, then DATA only when all were accepted; the DATA reply's text. On a `reused`
        connection, one that is gone at MAIL (closed, or 421) raises `_Dropped`: nothing was sent yet."""
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        options = ["SMTPUTF8"] if utf8 and smtp.has_extn("smtputf8") else []
        try:
            code, reply = smtp.mail(sender, options)
        except (smtplib.SMTPServerDisconnected, OSError):
            if reused:
                raise _Dropped from None
            raise
        if reused and code == 421:
            raise _Dropped
        if code != 250:
            smtp.rset()
            raise SMTPRefusedError(code, reply.decode("utf-8", "replace"))
        refused: dict[str, tuple[int, str]] = {}
        for recipient in recipients:
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, reply.decode("utf-8", "replace"))
        if refused:
            smtp.rset()
            code, text = next(iter(refused.values()))
            raise SMTPRefusedError(code, text, refused)
        code, reply = smtp.data(data)
        if code != 250:
            raise SMTPRefusedError(code, reply.decode("utf-8", "replace"))
        return reply.decode("utf-8", "replace")


class _Dropped(Exception):
    """A kept connection turned out closed at MAIL, before anything of the message was sent."""


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
