"""One SMTP submission session as a sans-I/O state machine: bytes in, replies and requests out.

No sockets, no asyncio, no clock. The I/O layer (`smtp.server`) feeds what it reads to
`SmtpSession.receive`, writes `Output.data`, then carries out `Output.action`:

    Authenticate(mechanism, username, password)  call the handler → session.authenticated(identity)
    Deliver(identity, mail_from, recipients, data)  call the handler → session.delivered(reply)
    StartTLS(discarded)                           handshake → session.tls_started()
    Close()                                       close once the data is written

While a request is out the session answers nothing: input is kept, in order, and worked through
once the result is fed back (RFC 2920 §3.1: pipelined commands are answered in order). A handler
call that raises is reported with `session.call_failed()`. Timeouts and shutdown are the I/O
layer's to notice; it asks for the words with `timed_out()` and `shut_down()`.

Framing decisions (RFC 5321 §2.3.8: lines end in <CRLF>, and nothing else is a line end):

- Commands end at "<CR><LF>". A line ended by a bare LF, or holding a bare CR, is refused
  (500 5.5.2) and dropped whole, so "MAIL FROM:<a>\\nRCPT TO:<b>\\r\\n" is two lines, neither
  of which is acted on as the client's sender.
- Message data ends only at "<CR><LF>.<CR><LF>" (or "." alone on the first line). A bare CR or LF
  anywhere in the content refuses the message at that real end (550 5.5.2), as does a NUL
  (550 5.6.0): the "SMTP smuggling" ends ("<LF>.<LF>", "<CR>.<CR>", …) are then content, never
  ends, and the message that holds them is not delivered.
- Un-dot-stuffing (RFC 5321 §4.5.2) and the checks run on the whole message with bytes methods
  (`find`, `count`, `replace`) once it is complete; no loop visits bytes or lines in Python.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from posthouse.server.smtp import replies as r
from posthouse.server.smtp.handler import INBOUND_BOUNCE, SmtpReply
from posthouse.server.smtp.replies import encode_reply

__all__ = [
    "Action",
    "Authenticate",
    "Close",
    "Deliver",
    "Output",
    "SessionPolicy",
    "SmtpSession",
    "StartTLS",
]

# RFC 4954 §4: an AUTH line (command with initial response, or a response line) may be up to
# 12288 octets. No partial line is buffered beyond this, whatever the command.
MAX_AUTH_LINE = 12288
# RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets.
MAX_ADDRESS = 254
_END_OF_DATA = b"\r\n.\r\n"
# Controls, space and angle brackets never belong in an address on a command line (RFC 5321
# §4.1.2); the C1 controls are refused in SMTPUTF8 addresses too.
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x20\x7f-\x9f<>]")


# --- What the session asks of the I/O layer ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Check these credentials with the handler, then call `authenticated(identity or None)`."""

    mechanism: str  # "PLAIN" or "LOGIN"
    username: str
    password: str = field(repr=False)  # never in logs or tracebacks


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand this message to the handler, then call `delivered(reply)`."""

    identity: object
    mail_from: str  # "" for the null reverse path
    recipients: tuple[str, ...]
    data: bytes = field(repr=False)  # un-dot-stuffed, every line ending in CRLF


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Start the TLS handshake (the 220 is in the same Output), then call `tls_started()`."""

    # Plaintext that followed STARTTLS and was thrown away (STARTTLS command injection,
    # CVE-2011-0411): nonzero means a broken or hostile client, worth a log line.
    discarded: int = 0


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection once `Output.data` is written. The session is over."""


Action = Authenticate | Deliver | StartTLS | Close
_CLOSE = Close()


class Output(NamedTuple):
    """What to do after a call into the session: write `data`, then carry out `action`."""

    data: bytes
    action: Action | None


NOTHING = Output(b"", None)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """The limits and names every session of one server shares; wire forms are computed once."""

    hostname: str
    max_message_size: int = 10 * 1024 * 1024  # RFC 1870 SIZE
    max_recipients: int = 50  # RFC 5321 §4.5.3.1.8 asks for at least 100; 452 beyond ours
    max_command_line: int = 512  # RFC 5321 §4.5.3.1.4, AUTH lines excepted (MAX_AUTH_LINE)
    max_errors: int = 20  # bad commands answered before 421 4.7.0 and close
    return_domain: str = ""  # lower-cased; recipients here need no AUTH (bounces to VERP return paths)
    # Sending domains' own Return-Path domains (CNAMEs to return_domain) take bounces too: asked with a
    # lower-cased domain, answered from what the handler last read (it cannot wait here).
    other_return_domain: Callable[[str], bool] = field(default=lambda _domain: False, compare=False)
    greeting: bytes = field(init=False, repr=False, compare=False)
    timeout: bytes = field(init=False, repr=False, compare=False)
    helo: bytes = field(init=False, repr=False, compare=False)
    # (offer STARTTLS, offer AUTH) → the EHLO reply
    ehlo: dict[tuple[bool, bool], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        hostname = self.hostname
        if not hostname or not hostname.isascii() or not hostname.isprintable() or " " in hostname:
            raise ValueError(f"hostname must be a domain name, not {hostname!r}")
        for name in ("max_message_size", "max_recipients", "max_command_line", "max_errors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_command_line < 64:
            raise ValueError("max_command_line must be at least 64 (RFC 5321 §4.5.3.1.4 asks for 512)")
        object.__setattr__(self, "greeting", encode_reply(r.greeting(hostname)))
        object.__setattr__(self, "timeout", encode_reply(r.timeout(hostname)))
        object.__setattr__(self, "helo", encode_reply(SmtpReply(250, hostname)))
        ehlo = {}
        for starttls in (False, True):
            for auth in (False, True):
                # RFC 5321 §4.1.1.1; the order is the one promised in the docs.
                lines = [hostname, "PIPELINING", f"SIZE {self.max_message_size}", "8BITMIME", "SMTPUTF8",
                         "ENHANCEDSTATUSCODES"]  # fmt: skip
                if starttls:
                    lines.append("STARTTLS")
                if auth:
                    lines.append("AUTH PLAIN LOGIN")
                ehlo[starttls, auth] = encode_reply(SmtpReply(250, "\n".join(lines)))
        object.__setattr__(self, "ehlo", ehlo)


# --- The session -------------------------------------------------------------------------------


class _State(Enum):
    CONNECTING = "connecting"  # waiting for connected(): no greeting yet
    COMMAND = "command"
    DATA = "data"  # between 354 and the end of data
    WAITING = "waiting"  # an Authenticate or Deliver request is out
    TLS = "tls"  # StartTLS is out
    CLOSED = "closed"


_CONNECTING = _State.CONNECTING
_COMMAND = _State.COMMAND
_DATA = _State.DATA
_WAITING = _State.WAITING
_TLS = _State.TLS
_CLOSED = _State.CLOSED

# AUTH steps: what the next line answers.
_AUTH_NONE, _AUTH_PLAIN, _AUTH_LOGIN_USER, _AUTH_LOGIN_PASSWORD = range(4)

# The replies of a transaction, encoded once: these are the hot path.
_W250_OK = encode_reply(r.S250_OK)
_W250_SENDER_OK = encode_reply(r.S250_SENDER_OK)
_W250_RECIPIENT_OK = encode_reply(r.S250_RECIPIENT_OK)
_W354_DATA = encode_reply(r.S354_DATA)


class SmtpSession:
    """The state of one SMTP connection, from the greeting to the close.

    `tls`: the connection is already encrypted (implicit TLS). `starttls`: STARTTLS can be
    offered. `auth_without_tls`: AUTH may be used before TLS (a plaintext-auth network, or a
    server that does not require TLS for AUTH).
    """

    __slots__ = (
        "_action",
        "_auth_identity",
        "_auth_step",
        "_auth_username",
        "_auth_without_tls",
        "_body",
        "_buf",
        "_dots",
        "_errors",
        "_esmtp",
        "_helo",
        "_identity",
        "_mail_from",
        "_network_identity",
        "_out",
        "_oversized",
        "_policy",
        "_pos",
        "_rcpts",
        "_scan",
        "_shutting_down",
        "_skipping",
        "_smtputf8",
        "_starttls",
        "_state",
        "_tls",
    )

    def __init__(
        self, policy: SessionPolicy, *, tls: bool = False, starttls: bool = False, auth_without_tls: bool = False
    ) -> None:
        self._policy = policy
        self._tls = tls
        self._starttls = starttls and not tls
        self._auth_without_tls = auth_without_tls
        self._state = _CONNECTING
        self._buf = b""  # input not yet worked through (commands; data while a request is out)
        self._pos = 0  # where the unread part of _buf starts
        self._out: list[bytes] = []
        self._action: Action | None = None
        self._errors = 0
        self._skipping = False  # inside an overlong line, dropping input up to its LF
        self._shutting_down = False
        self._helo: str | None = None
        self._esmtp = False
        self._network_identity: object | None = None
        self._auth_identity: object | None = None
        self._auth_step = _AUTH_NONE
        self._auth_username = ""
        # The transaction (RFC 5321 §3.3)
        self._identity: object | None = None
        self._mail_from: str | None = None
        self._smtputf8 = False
        self._rcpts: list[str] = []
        # Message data: "\r\n" + what arrived after 354, so that "." on the first line is found
        # as "<CRLF>.<CRLF>" like any other end.
        self._body = bytearray()
        self._scan = 0  # where the search for the end resumes
        self._dots = 0  # "<CRLF>." seen so far: each stands for one stuffed dot (size accounting)
        self._oversized = False

    # --- State the I/O layer looks at ---------------------------------------------------------

    @property
    def in_data(self) -> bool:
        """Between 354 and the end of data (the I/O layer's data timeout applies)."""
        return self._state is _DATA

    @property
    def is_identified(self) -> bool:
        """The client is known: authenticated, or in a trusted network (the shorter pre-AUTH timeout is over)."""
        return self._auth_identity is not None or self._network_identity is not None

    @property
    def is_closed(self) -> bool:
        return self._state is _CLOSED

    @property
    def is_tls(self) -> bool:
        return self._tls

    @property
    def backlog(self) -> int:
        """Octets received and not yet worked through (pipelined input held while a request is out)."""
        return len(self._buf) - self._pos

    @property
    def buffered(self) -> int:
        """Octets held in all: the backlog and the message data received so far."""
        return len(self._buf) - self._pos + len(self._body)

    # --- Input ----------------------------------------------------------------------------------

    def connected(self, identity: object | None) -> Output:
        """The connection is accepted; `identity` is the trusted network's, if any. Greets."""
        if self._state is not _CONNECTING:
            raise RuntimeError(f"connected() in state {self._state.value}")
        self._network_identity = identity
        if self._shutting_down:
            self._close_with(r.S421_SHUTTING_DOWN)
            return self._flush()
        self._state = _COMMAND
        self._out.append(self._policy.greeting)
        return self._run()

    def receive(self, data: bytes) -> Output:
        """Bytes from the client, as they came (any split). Returns what to write and do now."""
        state = self._state
        if state is _DATA:
            return self._run() if self._take_data(data) else NOTHING
        if state is _COMMAND:
            if self._pos < len(self._buf):
                self._buf = self._buf[self._pos :] + data
            else:
                self._buf = data
            self._pos = 0
            return self._run()
        if state is _WAITING or state is _CONNECTING:
            # Pipelined (RFC 2920 §3.1) or early input: kept, in order, for after the request.
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
            return NOTHING
        # TLS: plaintext after STARTTLS and before the handshake is never a command (CVE-2011-0411).
        # CLOSED: nothing more is read.
        return NOTHING

    def authenticated(self, identity: object | None) -> Output:
        """The handler's answer to Authenticate: an identity, or None for bad credentials."""
        self._expect(_WAITING)
        self._state = _COMMAND
        if identity is None:
            self._refuse(r.S535_AUTH_INVALID)
        else:
            self._auth_identity = identity
            self._say(r.S235_AUTH_SUCCESS)
        return self._resume()

    def delivered(self, reply: SmtpReply) -> Output:
        """The handler's answer to Deliver; sent as is. The transaction ends either way."""
        self._expect(_WAITING)
        self._state = _COMMAND
        self._reset_transaction()
        if reply.code == 421:
            # RFC 5321 §3.8: 421 means the service is closing the channel.
            self._close_with(reply)
            return self._flush()
        self._out.append(encode_reply(reply))
        return self._resume()

    def call_failed(self) -> Output:
        """The handler raised while a request (or the network lookup at connect) was out.

        Never a 2xx (STYLE: internal failure means retry later): 421 at connect, 454 for AUTH
        (RFC 4954 §6), 451 4.3.0 for the message.
        """
        if self._state is _CONNECTING:
            self._close_with(r.S421_INTERNAL_ERROR)
            return self._flush()
        self._expect(_WAITING)
        self._state = _COMMAND
        # A Deliver is only ever out inside a transaction, an Authenticate never (RFC 4954 §4).
        if self._mail_from is None:
            self._say(r.S454_AUTH_TEMPORARY_FAILURE)
        else:
            self._reset_transaction()
            self._say(r.S451_INTERNAL_ERROR)
        return self._resume()

    def tls_started(self) -> Output:
        """The handshake after STARTTLS succeeded.

        RFC 3207 §4.2: everything learned from the client before TLS is forgotten (EHLO, AUTH);
        the client must EHLO again. A trusted-network identity stays: it comes from the client's
        address, not from anything it said.
        """
        self._expect(_TLS)
        self._tls = True
        self._starttls = False
        self._helo = None
        self._esmtp = False
        self._auth_identity = None
        self._reset_transaction()
        self._buf = b""
        self._pos = 0
        self._state = _COMMAND
        return self._resume()

    def timed_out(self) -> Output:
        """The client was silent too long (RFC 5321 §4.5.3.2.7): 421 4.4.2 and close."""
        if self._state is _CLOSED:
            return NOTHING
        self._close_with(None, self._policy.timeout)
        return self._flush()

    def shut_down(self) -> Output:
        """The server is stopping: 421 4.3.2 and close now, or right after a request's answer."""
        if self._state is _CLOSED:
            return NOTHING
        self._shutting_down = True
        if self._state in (_WAITING, _CONNECTING, _TLS):
            return NOTHING
        self._close_with(r.S421_SHUTTING_DOWN)
        return self._flush()

    # --- The loop ---------------------------------------------------------------------------------

    def _run(self) -> Output:
        """Work through buffered input until it runs out, a request is out, or the session ends."""
        while True:
            state = self._state
            if state is _COMMAND:
                if not self._next_line():
                    break
            elif state is _DATA:
                rest = self._buf[self._pos :] if self._pos else self._buf
                self._buf = b""
                self._pos = 0
                if not rest or not self._take_data(rest):
                    break
            else:
                break
        return self._flush()

    def _resume(self) -> Output:
        if self._state is _CLOSED:
            return self._flush()
        if self._shutting_down:
            self._close_with(r.S421_SHUTTING_DOWN)
            return self._flush()
        return self._run()

    def _flush(self) -> Output:
        out = self._out
        action = self._action
        if not out:
            if action is None:
                return NOTHING
            data = b""
        else:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
        self._action = None
        return Output(data, action)

    def _expect(self, state: _State) -> None:
        if self._state is not state:
            raise RuntimeError(f"no request of that kind is out (state {self._state.value})")

    def _say(self, reply: SmtpReply) -> None:
        self._out.append(encode_reply(reply))

    def _refuse(self, reply: SmtpReply) -> None:
        """Answer a bad command; past `max_errors` of them, 421 4.7.0 instead and close."""
        self._errors += 1
        if self._errors > self._policy.max_errors:
            self._close_with(r.S421_TOO_MANY_ERRORS)
        else:
            self._out.append(encode_reply(reply))

    def _close_with(self, reply: SmtpReply | None, wire: bytes = b"") -> None:
        """End the session: this reply, then Close; nothing more is read."""
        self._out.append(encode_reply(reply) if reply is not None else wire)
        self._action = _CLOSE
        self._state = _CLOSED
        self._buf = b""
        self._pos = 0
        self._body = bytearray()

    def _reset_transaction(self) -> None:
        self._identity = None
        self._mail_from = None
        self._smtputf8 = False
        self._rcpts = []

    # --- Command lines ------------------------------------------------------------------------

    def _next_line(self) -> bool:
        """Act on the next complete line of _buf; False if there is none."""
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\n", pos)
        if end < 0:
            if self._skipping or len(buf) - pos > MAX_AUTH_LINE:
                # No command is this long: drop it as it comes, answer at its end.
                self._skipping = True
                self._buf = b""
            elif pos:
                self._buf = buf[pos:]
            self._pos = 0
            return False
        self._pos = end + 1
        if self._skipping:
            self._skipping = False
            self._auth_step = _AUTH_NONE
            self._refuse(r.S500_LINE_TOO_LONG)
            return True
        if end == pos or buf[end - 1] != 13:  # 13 is CR
            # RFC 5321 §2.3.8: a command ends with <CRLF>. A line ended by a bare LF is dropped
            # whole: acting on it would read as a command what another server reads as data.
            self._auth_step = _AUTH_NONE
            self._refuse(r.S500_BARE_LF)
            return True
        line = buf[pos : end - 1]
        if len(line) + 2 > MAX_AUTH_LINE:
            self._auth_step = _AUTH_NONE
            self._refuse(r.S500_LINE_TOO_LONG)
            return True
        if b"\r" in line:
            self._auth_step = _AUTH_NONE
            self._refuse(r.S500_BARE_CR)
            return True
        if self._auth_step:
            self._auth_response(line)
        else:
            self._command(line)
        return True

    def _command(self, line: bytes) -> None:
        space = line.find(b" ")
        if space < 0:
            verb = line.upper()
            arg = b""
        else:
            verb = line[:space].upper()
            arg = line[space + 1 :]
        if verb != b"AUTH" and len(line) + 2 > self._policy.max_command_line:
            self._refuse(r.S500_LINE_TOO_LONG)  # RFC 5321 §4.5.3.1.4 (AUTH: RFC 4954 §4)
            return
        method = _COMMANDS.get(verb)
        if method is not None:
            method(self, arg)
        elif not line.strip():
            self._refuse(r.S500_EMPTY)
        else:
            # BDAT lands here too: CHUNKING (RFC 3030) is not offered.
            self._refuse(r.S500_UNRECOGNIZED)

    def _ehlo(self, arg: bytes) -> None:
        name = arg.strip()
        if not name:
            self._refuse(r.S501_SYNTAX_EHLO)
            return
        self._reset_transaction()  # RFC 5321 §4.1.4: EHLO resets like RSET
        self._helo = name.decode("ascii", "replace")
        self._esmtp = True
        self._out.append(self._policy.ehlo[self._starttls, self._tls or self._auth_without_tls])

    def _helo_command(self, arg: bytes) -> None:
        name = arg.strip()
        if not name:
            self._refuse(r.S501_SYNTAX_HELO)
            return
        self._reset_transaction()
        self._helo = name.decode("ascii", "replace")
        self._esmtp = False
        self._out.append(self._policy.helo)

    def _mail(self, arg: bytes) -> None:
        if self._helo is None:
            self._refuse(r.S503_NEED_HELO)  # RFC 5321 §4.1.4
            return
        if self._mail_from is not None:
            self._refuse(r.S503_NESTED_MAIL)
            return
        identity = self._auth_identity if self._auth_identity is not None else self._network_identity
        if identity is None and self._policy.return_domain:
            # Bounces come from any MTA without AUTH; RCPT then takes our return-path domain only.
            identity = INBOUND_BOUNCE
        if identity is None:
            self._refuse(r.S530_AUTH_REQUIRED)  # RFC 4954 §6
            return
        path = _split_path(arg, b"FROM:")
        if path is None:
            self._refuse(r.S501_SYNTAX_MAIL)
            return
        address, params = path
        smtputf8 = False
        if params:
            if not self._esmtp:
                self._refuse(r.S555_UNKNOWN_MAIL_PARAMETER)  # parameters need EHLO (RFC 5321 §4.1.1.2)
                return
            for param in params.split():
                key, _, value = param.partition(b"=")
                key = key.upper()
                if key == b"SIZE":  # RFC 1870 §6
                    if not value.isdigit() or len(value) > 20:
                        self._refuse(r.S501_SYNTAX_MAIL)
                        return
                    if int(value) > self._policy.max_message_size:
                        self._say(r.S552_TOO_BIG)
                        return
                elif key == b"BODY":  # RFC 6152 §3
                    if value.upper() not in (b"7BIT", b"8BITMIME"):
                        self._refuse(r.S501_SYNTAX_MAIL)
                        return
                elif key == b"SMTPUTF8" and not value:  # RFC 6531 §3.4
                    smtputf8 = True
                else:
                    self._refuse(r.S555_UNKNOWN_MAIL_PARAMETER)
                    return
        if address:
            checked = _check_address(address, smtputf8, r.S501_BAD_SENDER)
            if isinstance(checked, SmtpReply):
                self._refuse(checked)
                return
            sender = checked
        else:
            sender = ""  # the null reverse path (RFC 5321 §4.5.5)
        self._identity = identity
        self._mail_from = sender
        self._smtputf8 = smtputf8
        self._rcpts = []
        self._out.append(_W250_SENDER_OK)

    def _rcpt(self, arg: bytes) -> None:
        if self._mail_from is None:
            self._refuse(r.S503_NEED_MAIL)
            return
        path = _split_path(arg, b"TO:")
        if path is None:
            self._refuse(r.S501_SYNTAX_RCPT)
            return
        address, params = path
        if params:
            self._refuse(r.S555_UNKNOWN_RCPT_PARAMETER)  # no DSN (RFC 3461) on offer
            return
        if len(self._rcpts) >= self._policy.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452, and the client sends the rest in another transaction.
            self._say(r.S452_TOO_MANY_RECIPIENTS)
            return
        if address.lower() == b"postmaster":
            recipient = address.decode("ascii")  # RFC 5321 §4.5.1: <Postmaster> needs no domain
        else:
            checked = _check_address(address, self._smtputf8, r.S501_BAD_RECIPIENT)
            if isinstance(checked, SmtpReply):
                self._refuse(checked)
                return
            recipient = checked
        if self._identity is INBOUND_BOUNCE:
            domain = recipient.rpartition("@")[2].lower().rstrip(".")
            if domain != self._policy.return_domain and not self._policy.other_return_domain(domain):
                self._refuse(r.S530_AUTH_REQUIRED)  # not a bounce: only an authenticated client may relay
                return
        self._rcpts.append(recipient)
        self._out.append(_W250_RECIPIENT_OK)

    def _data(self, arg: bytes) -> None:
        if arg.strip():
            self._refuse(r.S501_SYNTAX_DATA)
            return
        if self._mail_from is None:
            self._refuse(r.S503_NEED_MAIL)
            return
        if not self._rcpts:
            # RFC 2920 §3.1: every RCPT of the group failed; what follows is read as commands,
            # since a client must not send data without a 354.
            self._refuse(r.S503_NEED_RCPT)
            return
        self._out.append(_W354_DATA)
        self._state = _DATA
        self._body = bytearray(b"\r\n")
        self._scan = 0
        self._dots = 0
        self._oversized = False

    def _rset(self, arg: bytes) -> None:
        self._reset_transaction()
        self._out.append(_W250_OK)

    def _noop(self, arg: bytes) -> None:
        self._out.append(_W250_OK)

    def _quit(self, arg: bytes) -> None:
        self._close_with(r.S221_BYE)

    def _vrfy(self, arg: bytes) -> None:
        self._say(r.S252_CANNOT_VRFY)

    def _help(self, arg: bytes) -> None:
        self._say(r.S214_HELP)

    def _starttls_command(self, arg: bytes) -> None:
        if arg.strip():
            self._refuse(r.S501_SYNTAX_STARTTLS)
        elif self._tls:
            self._refuse(r.S503_TLS_ACTIVE)
        elif not self._starttls:
            self._refuse(r.S502_NOT_IMPLEMENTED)
        elif self._mail_from is not None:
            self._refuse(r.S503_STARTTLS_IN_TRANSACTION)
        else:
            self._say(r.S220_READY_TLS)
            # STARTTLS command injection (CVE-2011-0411, CERT VU#555316): anything the client
            # sent after STARTTLS came in plaintext and must never be read as if it came over
            # TLS. It is discarded, as Postfix does; RFC 3207 §4.2 lets the client find out
            # nothing from it, and RFC 2920 §3.1 makes STARTTLS the last command of a group.
            discarded = len(self._buf) - self._pos
            self._buf = b""
            self._pos = 0
            self._state = _TLS
            self._action = StartTLS(discarded)

    # --- AUTH (RFC 4954, PLAIN per RFC 4616, LOGIN) ------------------------------------------

    def _auth(self, arg: bytes) -> None:
        if not self._esmtp:
            self._refuse(r.S503_NEED_EHLO)
            return
        if self._auth_identity is not None:
            self._refuse(r.S503_ALREADY_AUTHENTICATED)  # RFC 4954 §4
            return
        if self._mail_from is not None:
            self._refuse(r.S503_AUTH_IN_TRANSACTION)  # RFC 4954 §4
            return
        mechanism, _, initial = arg.strip().partition(b" ")
        mechanism = mechanism.upper()
        if not mechanism:
            self._refuse(r.S501_SYNTAX_AUTH)
            return
        if mechanism != b"PLAIN" and mechanism != b"LOGIN":
            self._refuse(r.S504_UNKNOWN_MECHANISM)
            return
        if not (self._tls or self._auth_without_tls):
            self._refuse(r.S538_ENCRYPTION_REQUIRED)  # RFC 4954 §6
            return
        initial = initial.strip()
        if mechanism == b"PLAIN":
            if initial:
                self._auth_plain(initial)
            else:
                self._auth_step = _AUTH_PLAIN
                self._say(r.S334_EMPTY)
        elif initial:
            # Some LOGIN clients send the user name as an initial response.
            self._auth_step = _AUTH_LOGIN_USER
            self._auth_response(initial)
        else:
            self._auth_step = _AUTH_LOGIN_USER
            self._say(r.S334_USERNAME)

    def _auth_response(self, line: bytes) -> None:
        step = self._auth_step
        self._auth_step = _AUTH_NONE
        if line == b"*":
            self._refuse(r.S501_AUTH_CANCELLED)  # RFC 4954 §4
            return
        if step == _AUTH_PLAIN:
            self._auth_plain(line)
            return
        text = _decode_base64_text(line)
        if text is None:
            self._refuse(r.S501_BAD_BASE64)
        elif step == _AUTH_LOGIN_USER:
            self._auth_username = text
            self._auth_step = _AUTH_LOGIN_PASSWORD
            self._say(r.S334_PASSWORD)
        else:
            username = self._auth_username
            self._auth_username = ""
            self._request(Authenticate("LOGIN", username, text))

    def _auth_plain(self, response: bytes) -> None:
        decoded = _decode_base64(response)
        parts = decoded.split(b"\0") if decoded is not None else []
        if len(parts) != 3:
            self._refuse(r.S501_BAD_BASE64)
            return
        try:
            authzid, authcid, password = (part.decode() for part in parts)
        except UnicodeDecodeError:
            self._refuse(r.S501_BAD_BASE64)
            return
        if authzid and authzid != authcid:
            # RFC 4616 §2: acting for another identity is not something we authorize.
            self._refuse(r.S535_AUTH_INVALID)
            return
        self._request(Authenticate("PLAIN", authcid, password))

    def _request(self, action: Action) -> None:
        self._action = action
        self._state = _WAITING

    # --- Message data ---------------------------------------------------------------------------

    def _take_data(self, chunk: bytes) -> bool:
        """Add message data; True when the end of data was reached (the rest goes back to _buf)."""
        body = self._body
        start = len(body)
        body += chunk
        end = body.find(_END_OF_DATA, self._scan)
        if end < 0:
            if not self._oversized:
                # RFC 1870: the size is counted without dot-stuffing; a stuffed dot follows
                # every "<CRLF>." (the count may span the previous chunk's last two octets).
                self._dots += body.count(b"\r\n.", max(0, start - 2))
                if len(body) - 2 - self._dots > self._policy.max_message_size:
                    self._oversized = True
            if self._oversized:
                # Keep reading to the end, but only the last 4 octets: enough to find the end
                # if it spans two reads.
                del body[:-4]
                self._scan = 0
            else:
                self._scan = max(0, len(body) - 4)
            return False
        with memoryview(body) as view:
            rest = bytes(view[end + 5 :])
            data = None if self._oversized else bytes(view[2 : end + 2])
        self._body = bytearray()
        self._buf = rest
        self._pos = 0
        self._state = _COMMAND
        if data is None:
            self._reset_transaction()
            self._say(r.S552_TOO_BIG)
            return True
        lf = data.count(b"\n")
        if data.count(b"\r\n") != lf or data.count(b"\r") != lf:
            # RFC 5321 §2.3.8, and the SMTP smuggling research (SEC Consult, 2023; Postfix
            # smtpd_forbid_bare_newline): a message with a bare CR or LF could hold an end of
            # data that another server honours. Refused whole; nothing reaches the handler.
            self._reset_transaction()
            self._say(r.S550_BARE_LINE_ENDING)
            return True
        if b"\0" in data:
            self._reset_transaction()
            self._say(r.S550_NUL)
            return True
        # RFC 5321 §4.5.2: a line that starts with "." had one added; remove it.
        if data[:1] == b".":
            data = data[1:]
        data = data.replace(b"\r\n.", b"\r\n")
        if len(data) > self._policy.max_message_size:
            self._reset_transaction()
            self._say(r.S552_TOO_BIG)
            return True
        assert self._mail_from is not None
        self._request(Deliver(self._identity, self._mail_from, tuple(self._rcpts), data))
        return True


_COMMANDS = {
    b"EHLO": SmtpSession._ehlo,
    b"HELO": SmtpSession._helo_command,
    b"MAIL": SmtpSession._mail,
    b"RCPT": SmtpSession._rcpt,
    b"DATA": SmtpSession._data,
    b"RSET": SmtpSession._rset,
    b"NOOP": SmtpSession._noop,
    b"QUIT": SmtpSession._quit,
    b"VRFY": SmtpSession._vrfy,
    b"HELP": SmtpSession._help,
    b"STARTTLS": SmtpSession._starttls_command,
    b"AUTH": SmtpSession._auth,
}


# --- Parsing helpers ----------------------------------------------------------------------------


def _split_path(arg: bytes, keyword: bytes) -> tuple[bytes, bytes] | None:
    """Split `FROM:<path> params` into (path without brackets or source route, params); None if malformed."""
    size = len(keyword)
    if arg[:size].upper() != keyword:
        return None
    rest = arg[size:].lstrip(b" ")  # "MAIL FROM: <a@b>" is a common client slip; tolerated
    if rest[:1] != b"<":
        return None
    close = rest.find(b">")
    if close < 0:
        return None
    path = rest[1:close]
    params = rest[close + 1 :]
    if params and params[:1] != b" ":
        return None
    if path[:1] == b"@":
        # RFC 5321 §4.1.2 and Appendix C: a source route ("@a,@b:user@c") is accepted and ignored.
        # Without its colon it is no route, just a bad address, and is refused as one.
        path = path[path.find(b":") + 1 :]
    return path, params.strip(b" ")


def _check_address(raw: bytes, smtputf8: bool, bad: SmtpReply) -> str | SmtpReply:
    """A minimal mailbox check (local@domain, no controls or spaces); the handler checks the rest."""
    if len(raw) > MAX_ADDRESS:
        return bad
    if raw.isascii():
        text = raw.decode("ascii")
    elif not smtputf8:
        return r.S553_SMTPUTF8_REQUIRED  # RFC 6531 §3.5
    else:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return bad
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or _UNSAFE_ADDRESS.search(text):
        return bad
    return text


def _decode_base64(data: bytes) -> bytes | None:
    if data == b"=":
        return b""  # RFC 4954 §4: "=" is an empty initial response
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        return None


def _decode_base64_text(data: bytes) -> str | None:
    decoded = _decode_base64(data)
    if decoded is None:
        return None
    try:
        return decoded.decode()
    except UnicodeDecodeError:
        return None
