"""SMTP smuggling and command injection against the submission server: nothing is ever delivered twice.

The threats:

- SMTP smuggling (SEC Consult, December 2023; CVE-2023-51764/51765/51766): a message carries a
  fake end of data ("<LF>.<LF>", "<CR>.<CR>", …) followed by a second transaction. A server that
  takes the fake end for a real one delivers the second, forged message; one that does not, but
  relays the content to one that does, smuggles it one hop later. Our server ends data only at
  "<CR><LF>.<CR><LF>" and refuses a message holding any bare CR or LF (RFC 5321 §2.3.8), or a NUL
  (which some relays strip, turning "<CR><LF><NUL>.<CR><LF>" into an end), with 550: the handler
  receives nothing, and the session goes on after the real end.
- Bare LF in commands: "MAIL FROM:<a>\\nRCPT TO:<b>\\r\\n" is refused line by line (500 5.5.2).
- STARTTLS command injection (CVE-2011-0411): plaintext pipelined after STARTTLS is discarded,
  never executed as if it came over TLS.

Raw sockets only: smtplib and aiosmtplib normalize line endings and could not send these.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from integration.smtp_peers import make_tls_contexts
from posthouse.server.smtp import replies as r
from posthouse.server.smtp.handler import Peer, SmtpReply
from posthouse.server.smtp.server import Listener, SmtpServer, SmtpServerConfig
from posthouse.server.smtp.session import Authenticate, Close, Deliver, SessionPolicy, SmtpSession, StartTLS

TOKEN = "token-1"
AUTH = "AUTH PLAIN " + base64.b64encode(f"\0{TOKEN}\0{TOKEN}".encode()).decode()
ENVELOPE = "MAIL FROM:<app@example.com>\r\nRCPT TO:<user@example.net>\r\nDATA\r\n"
SMUGGLED = b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nsmuggled\r\n.\r\n"

# Each fake end of data from the research, and what the server answers at the real end.
VARIANTS = [
    (b"\n.\n", r.S550_BARE_LINE_ENDING),
    (b"\n.\r\n", r.S550_BARE_LINE_ENDING),
    (b"\r\n.\n", r.S550_BARE_LINE_ENDING),
    (b"\r.\r", r.S550_BARE_LINE_ENDING),
    (b"\r\n.\r", r.S550_BARE_LINE_ENDING),
    (b"\n.\r", r.S550_BARE_LINE_ENDING),
    (b"\r.\r\n", r.S550_BARE_LINE_ENDING),
    (b"\r.\n", r.S550_BARE_LINE_ENDING),
    (b"\r\n\x00.\r\n", r.S550_NUL),
]


@dataclass
class RecordingHandler:
    deliveries: list[bytes] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)

    async def identify_network(self, peer: Peer) -> object | None:
        return None

    async def authenticate(self, peer: Peer, mechanism: str, username: str, password: str) -> object | None:
        return "server-1" if username == password == TOKEN else None

    async def deliver(self, identity: object, mail_from: str, recipients: Sequence[str], data: bytes,
                      peer: Peer) -> SmtpReply:  # fmt: skip
        self.deliveries.append(data)
        self.senders.append(mail_from)
        return SmtpReply(250, "2.0.0 Ok: queued")


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def reply(self, timeout: float = 5.0) -> str:
        lines: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.reader.readline()
                assert raw, f"connection closed after {lines}"
                lines.append(raw.decode().removesuffix("\r\n"))
                if lines[-1][3:4] != "-":
                    return "\n".join(lines)

    async def replies(self, count: int) -> list[str]:
        return [await self.reply() for _ in range(count)]

    async def command(self, line: str) -> str:
        self.send(line + "\r\n")
        return await self.reply()


@contextlib.asynccontextmanager
async def session(handler: RecordingHandler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Client]:
    """A connected, greeted client of a fresh server on loopback (127.0.0.1: AUTH allowed in plaintext)."""
    server = SmtpServer(handler, SmtpServerConfig(hostname="mx.test"), ssl_context)
    ((_, port),) = await server.start([Listener("127.0.0.1", 0)])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Client(reader, writer)
    try:
        assert (await client.reply()).startswith("220 ")
        yield client
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        await server.stop(grace=1)


async def authenticated(client: Client) -> None:
    await client.command("EHLO client.test")
    assert await client.command(AUTH) == str(r.S235_AUTH_SUCCESS)


# --- Smuggling on the wire ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fake_end", "refusal"), VARIANTS, ids=[repr(v[0]) for v in VARIANTS])
async def test_fake_end_of_data_smuggles_nothing(fake_end: bytes, refusal: SmtpReply) -> None:
    handler = RecordingHandler()
    async with session(handler) as client:
        await authenticated(client)
        client.send(ENVELOPE)
        assert await client.replies(3) == ["250 2.1.0 Ok", "250 2.1.5 Ok", str(r.S354_DATA)]
        client.send(b"Subject: hello\r\n\r\nhello" + fake_end + SMUGGLED)
        # One reply, at the real end: no 250 for the forged MAIL, no 354 for its DATA.
        assert await client.reply() == str(refusal)
        assert handler.deliveries == []
        # The session goes on: a clean message afterwards is delivered, alone.
        client.send(ENVELOPE + "Subject: clean\r\n\r\nclean\r\n.\r\n")
        assert await client.replies(4) == ["250 2.1.0 Ok", "250 2.1.5 Ok", str(r.S354_DATA), "250 2.0.0 Ok: queued"]
        assert await client.command("QUIT") == str(r.S221_BYE)
    assert handler.deliveries == [b"Subject: clean\r\n\r\nclean\r\n"]
    assert handler.senders == ["app@example.com"]


async def test_a_fake_end_alone_is_not_an_end() -> None:
    """The client waits after "<LF>.<LF>", as a smuggler probing the server would: no reply comes."""
    handler = RecordingHandler()
    async with session(handler) as client:
        await authenticated(client)
        client.send(ENVELOPE)
        await client.replies(3)
        client.send(b"Subject: probe\r\n\r\nhello\n.\n")
        with pytest.raises(TimeoutError):
            await client.reply(timeout=0.3)
        client.send(b"MAIL FROM:<evil@x>\r\n")
        with pytest.raises(TimeoutError):
            await client.reply(timeout=0.3)
        client.send(b"\r\n.\r\n")
        assert await client.reply() == str(r.S550_BARE_LINE_ENDING)
    assert handler.deliveries == []


async def test_bare_lf_in_commands_is_refused_line_by_line() -> None:
    handler = RecordingHandler()
    async with session(handler) as client:
        await authenticated(client)
        client.send(b"MAIL FROM:<app@example.com>\nRCPT TO:<user@example.net>\r\n")
        assert await client.replies(2) == ["500 5.5.2 Bare <LF> in command not allowed", str(r.S503_NEED_MAIL)]
        client.send(b"NOOP\rMAIL FROM:<evil@x>\r\n")
        assert await client.reply() == "500 5.5.2 Bare <CR> in command not allowed"
        assert await client.command("RCPT TO:<user@example.net>") == str(r.S503_NEED_MAIL)
    assert handler.deliveries == []


async def test_plaintext_pipelined_after_starttls_is_discarded(tmp_path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    server_context, client_context = make_tls_contexts(tmp_path)
    handler = RecordingHandler()
    async with session(handler, server_context) as client:
        await client.command("EHLO client.test")
        client.send(b"STARTTLS\r\n" + AUTH.encode() + b"\r\nMAIL FROM:<evil@x>\r\n")
        assert await client.reply() == str(r.S220_READY_TLS)
        await client.writer.start_tls(client_context, server_hostname="localhost")
        # Nothing sent before the handshake is answered over TLS: the first reply is EHLO's.
        assert (await client.command("EHLO client.test")).startswith("250-mx.test\n")
        assert await client.command("RCPT TO:<victim@y>") == str(r.S503_NEED_MAIL)
        assert await client.command("MAIL FROM:<app@example.com>") == str(r.S530_AUTH_REQUIRED)
    assert "CVE-2011-0411" in caplog.text
    assert handler.deliveries == []


# --- The same, without sockets: any split, any content ------------------------------------------------


class _Run:
    """Feeds a session and answers its requests: 235 for TOKEN, 250 for every message."""

    def __init__(self) -> None:
        self.session = SmtpSession(SessionPolicy("mx.test"), tls=True)
        self.deliveries: list[Deliver] = []
        self.wire = bytearray()
        self._apply(self.session.connected(None))

    def feed(self, data: bytes) -> None:
        self._apply(self.session.receive(data))

    def _apply(self, output: tuple[bytes, object]) -> None:
        while True:
            data, action = output
            self.wire += data
            if isinstance(action, Authenticate):
                output = self.session.authenticated("server-1")
            elif isinstance(action, Deliver):
                self.deliveries.append(action)
                output = self.session.delivered(SmtpReply(250, "2.0.0 Ok: queued"))
            else:
                assert action is None or isinstance(action, Close | StartTLS)
                return


def _prologue() -> bytes:
    return f"EHLO client.test\r\n{AUTH}\r\n{ENVELOPE}".encode()


@pytest.mark.parametrize(("fake_end", "refusal"), VARIANTS, ids=[repr(v[0]) for v in VARIANTS])
def test_every_variant_fed_one_octet_at_a_time(fake_end: bytes, refusal: SmtpReply) -> None:
    run = _Run()
    for octet in _prologue() + b"hello" + fake_end + SMUGGLED:
        run.feed(bytes([octet]))
    assert run.deliveries == []
    _, after_354 = run.wire.split(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    assert after_354 == str(refusal).encode() + b"\r\n"  # the refusal, and nothing for the forged MAIL


_PIECES = st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b"\n.\n", b"\r.\r", b"\r\n.\r", b"\x00", b"a", b" ",
                           b"MAIL FROM:<evil@x>", b"DATA", b"\xe9"])  # fmt: skip
_CONTENT = st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=40).map(b"".join)


def _unstuffed(content: bytes) -> bytes:
    lines = (content + b"\r\n").split(b"\r\n")[:-1]
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


@settings(max_examples=400, deadline=None)
@given(content=_CONTENT, cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_arbitrary_content_is_one_message_or_none(content: bytes, cuts: list[int]) -> None:
    """Whatever the content and however it is split, up to its one real end: one clean message or nothing."""
    framed = b"\r\n" + content + b"\r\n.\r\n"
    assume(framed.find(b"\r\n.\r\n") == len(framed) - 5)  # the client's own end is the only real one
    stream = _prologue() + content + b"\r\n.\r\nQUIT\r\n"
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    bounds = [0, *points, len(stream)]
    run = _Run()
    for start, end in itertools.pairwise(bounds):
        run.feed(stream[start:end])
    data = content + b"\r\n"
    clean = data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r") and b"\x00" not in data
    assert [delivery.data for delivery in run.deliveries] == ([_unstuffed(content)] if clean else [])
    assert run.wire.endswith(b"221 2.0.0 Bye\r\n")
