"""The SMTP submission server against real peers on loopback: smtplib, aiosmtplib, swaks, raw sockets.

The handler is an in-memory fake: "token-1" as user name and password is the identity
"server-1", a configured set of client addresses is a trusted network, and every accepted message
is recorded. Every refusal is checked for its exact reply and for the handler having received
nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from smtp_peers import make_tls_contexts

from posthouse.server.smtp import replies as r
from posthouse.server.smtp.handler import Peer, SmtpReply
from posthouse.server.smtp.server import Listener, SmtpServer, SmtpServerConfig
from support import async_wait_for

USER = PASS = "token-1"
IDENTITY = "server-1"
NETWORK_IDENTITY = "trusted-network"
FROM = "app@example.com"
TO = "user@example.net"
HOST = "mx.test"


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


AUTH = f"AUTH PLAIN {plain(USER, PASS)}"
BAD_AUTH = f"AUTH PLAIN {plain(USER, 'wrong')}"


# --- The fake handler ------------------------------------------------------------------------------


@dataclass
class Delivery:
    identity: object
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    peer: Peer


@dataclass
class FakeHandler:
    """Records what it accepts; can be told to fail or to hold a delivery until released."""

    trusted: set[str] = field(default_factory=set)  # client addresses that submit without AUTH
    deliveries: list[Delivery] = field(default_factory=list)
    auth_calls: int = 0
    fail_identify: bool = False
    fail_auth: bool = False
    fail_deliver: bool = False
    hold: asyncio.Event | None = None  # when set up, deliver() waits for it
    holding: asyncio.Event = field(default_factory=asyncio.Event)  # set while deliver() waits

    async def identify_network(self, peer: Peer) -> object | None:
        if self.fail_identify:
            raise RuntimeError("network table unavailable")
        return NETWORK_IDENTITY if peer.host in self.trusted else None

    async def authenticate(self, peer: Peer, mechanism: str, username: str, password: str) -> object | None:
        self.auth_calls += 1
        if self.fail_auth:
            raise KeyError(password)  # the kind of error that would quote a secret
        return IDENTITY if username == password == USER else None

    async def deliver(self, identity: object, mail_from: str, recipients: Sequence[str], data: bytes,
                      peer: Peer) -> SmtpReply:  # fmt: skip
        if self.hold is not None:
            self.holding.set()
            await self.hold.wait()
        if self.fail_deliver:
            raise RuntimeError("database is down")
        self.deliveries.append(Delivery(identity, mail_from, tuple(recipients), data, peer))
        return SmtpReply(250, f"2.0.0 Ok: queued as {len(self.deliveries)}")


# --- Servers and clients ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    server: ssl.SSLContext
    client: ssl.SSLContext
    cert: Path


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    directory = tmp_path_factory.mktemp("smtp-tls")
    server, client = make_tls_contexts(directory)
    return TLSFiles(server, client, directory / "cert.pem")


@dataclass
class Served:
    server: SmtpServer
    port: int
    implicit_port: int | None


@contextlib.asynccontextmanager
async def serving(handler: FakeHandler, tls: TLSFiles | None = None, *, implicit: bool = False,
                  **config: object) -> AsyncIterator[Served]:  # fmt: skip
    """Our server on 127.0.0.1 port 0 (and an implicit-TLS listener if asked), stopped at the end."""
    server = SmtpServer(handler, SmtpServerConfig(hostname=HOST, **config), tls.server if tls else None)  # type: ignore[arg-type]
    listeners = [Listener("127.0.0.1", 0)] + ([Listener("127.0.0.1", 0, implicit_tls=True)] if implicit else [])
    addresses = await server.start(listeners)
    try:
        yield Served(server, addresses[0][1], addresses[1][1] if implicit else None)
    finally:
        await server.stop(grace=2)


class RawClient:
    """SMTP over a socket with exactly the bytes given: for pipelining and what smtplib would mend."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, *, source: str | None = None, ssl_context: ssl.SSLContext | None = None,
                      greeting: bool = True) -> RawClient:  # fmt: skip
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0) if source else None, ssl=ssl_context,
            server_hostname="localhost" if ssl_context else None)  # fmt: skip
        client = cls(reader, writer)
        if greeting:
            assert await client.reply() == f"220 {HOST} ESMTP Posthouse"
        return client

    def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def reply(self, timeout: float = 5.0) -> str:
        """One reply; the lines of a multi-line one joined with "\\n"."""
        lines: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.reader.readline()
                if not raw:
                    raise ConnectionError(f"closed by the server after {lines}")
                line = raw.decode().removesuffix("\r\n")
                lines.append(line)
                if line[3:4] != "-":
                    return "\n".join(lines)

    async def replies(self, count: int) -> list[str]:
        return [await self.reply() for _ in range(count)]

    async def command(self, line: str) -> str:
        self.send(line + "\r\n")
        return await self.reply()

    async def login(self) -> None:
        await self.command("EHLO client.test")
        assert await self.command(AUTH) == str(r.S235_AUTH_SUCCESS)

    async def starttls(self, context: ssl.SSLContext) -> None:
        assert await self.command("STARTTLS") == str(r.S220_READY_TLS)
        await self.writer.start_tls(context, server_hostname="localhost")

    async def at_eof(self, timeout: float = 5.0) -> bool:
        async with asyncio.timeout(timeout):
            return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw(port: int, **kwargs: object) -> AsyncIterator[RawClient]:
    client = await RawClient.connect(port, **kwargs)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.close()


def ehlo_keywords(reply: str) -> list[str]:
    return [line[4:] for line in reply.split("\n")[1:]]


def message(subject: str = "Hello", body: str = "Hello there.\n.a line with a leading dot\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = FROM
    msg["To"] = TO
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


# --- Real clients -------------------------------------------------------------------------------------


async def test_smtplib_starttls_login_sendmail(tls: TLSFiles) -> None:
    handler = FakeHandler()
    msg = message()
    async with serving(handler, tls) as served:
        host, port, ctx, to_addr = "127.0.0.1", served.port, tls.client, [TO, "second@example.org"]

        def send() -> None:
            with smtplib.SMTP(host, port) as server:
                server.starttls(context=ctx)
                server.login(USER, PASS)
                server.sendmail(FROM, to_addr, msg.as_string())

        await asyncio.to_thread(send)
    (delivery,) = handler.deliveries
    assert (delivery.identity, delivery.mail_from, delivery.recipients) == (IDENTITY, FROM, tuple(to_addr))
    assert delivery.data == msg.as_string().replace("\n", "\r\n").encode()
    assert email.message_from_bytes(delivery.data)["Subject"] == "Hello"
    assert delivery.peer.is_tls
    assert delivery.peer.host == "127.0.0.1"


async def test_smtplib_auth_login_with_challenges_and_implicit_tls(tls: TLSFiles) -> None:
    handler = FakeHandler()
    async with serving(handler, tls, implicit=True) as served:
        port = served.implicit_port
        assert port is not None

        def send() -> tuple[int, bytes]:
            with smtplib.SMTP_SSL("127.0.0.1", port, context=tls.client) as server:
                server.ehlo()
                assert "starttls" not in server.esmtp_features
                server.user, server.password = USER, PASS
                result = server.auth("LOGIN", server.auth_login, initial_response_ok=False)
                server.sendmail(FROM, [TO], b"Subject: implicit\r\n\r\nbody\r\n")
                return result

        assert await asyncio.to_thread(send) == (235, b"2.7.0 Authentication successful")
    assert [d.data for d in handler.deliveries] == [b"Subject: implicit\r\n\r\nbody\r\n"]
    assert handler.deliveries[0].peer.is_tls


async def test_smtplib_sees_each_refusal_with_its_enhanced_code(tls: TLSFiles) -> None:
    handler = FakeHandler()
    async with serving(handler, tls, max_message_size=1000) as served:

        def talk() -> None:
            with smtplib.SMTP("127.0.0.1", served.port) as server:
                server.starttls(context=tls.client)
                with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                    server.login(USER, "wrong")
                assert (refused.value.smtp_code, refused.value.smtp_error) == (535, r.S535_AUTH_INVALID.text.encode())
                with pytest.raises(smtplib.SMTPSenderRefused) as sender:
                    server.sendmail(FROM, [TO], b"x")
                assert sender.value.smtp_code == 530
                server.login(USER, PASS)
                with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
                    server.sendmail(FROM, [TO], b"x" * 2000)  # smtplib sends SIZE=2002
                assert (too_big.value.smtp_code, too_big.value.smtp_error) == (552, r.S552_TOO_BIG.text.encode())

        await asyncio.to_thread(talk)
    assert handler.deliveries == []


async def test_aiosmtplib_several_messages_in_one_session(tls: TLSFiles) -> None:
    handler = FakeHandler()
    async with serving(handler, tls) as served:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=served.port, start_tls=True, tls_context=tls.client)
        async with smtp:
            await smtp.login(USER, PASS)
            for i in range(5):
                errors, reply = await smtp.sendmail(FROM, [TO, f"cc{i}@example.org"], f"Subject: {i}\r\n\r\n{i}\r\n")
                assert errors == {}
                assert reply == f"2.0.0 Ok: queued as {i + 1}"
    assert [d.data for d in handler.deliveries] == [f"Subject: {i}\r\n\r\n{i}\r\n".encode() for i in range(5)]
    assert [d.recipients for d in handler.deliveries] == [(TO, f"cc{i}@example.org") for i in range(5)]


async def test_aiosmtplib_implicit_tls(tls: TLSFiles) -> None:
    handler = FakeHandler()
    async with serving(handler, tls, implicit=True) as served:
        assert served.implicit_port is not None
        await aiosmtplib.send(b"Subject: x\r\n\r\ny\r\n", sender=FROM, recipients=[TO], hostname="127.0.0.1",
                              port=served.implicit_port, use_tls=True, tls_context=tls.client, username=USER,
                              password=PASS)  # fmt: skip
    assert len(handler.deliveries) == 1


async def test_raw_pipelined_group_is_answered_in_order() -> None:
    handler = FakeHandler()
    async with serving(handler) as served, raw(served.port) as client:
        await client.login()  # AUTH before TLS: 127.0.0.1 is a plaintext-auth network by default
        client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        assert await client.replies(4) == ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok", str(r.S354_DATA)]
        # RFC 2920 §3.1: the message content may open the next group.
        client.send("Subject: one\r\n\r\n..dot\r\n.\r\n"
                    f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\n")  # fmt: skip
        assert await client.replies(4) == ["250 2.0.0 Ok: queued as 1", "250 2.1.0 Ok", "250 2.1.5 Ok",
                                           str(r.S354_DATA)]  # fmt: skip
        client.send("Subject: two\r\n\r\n.\r\nQUIT\r\n")
        assert await client.replies(2) == ["250 2.0.0 Ok: queued as 2", str(r.S221_BYE)]
        assert await client.at_eof()
    assert [(d.recipients, d.data) for d in handler.deliveries] == [
        ((TO, "b@example.org"), b"Subject: one\r\n\r\n.dot\r\n"),
        ((TO,), b"Subject: two\r\n\r\n"),
    ]


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_swaks(tls: TLSFiles, mode: str) -> None:
    handler = FakeHandler()
    async with serving(handler, tls, implicit=True) as served:
        if mode == "starttls":
            options = ["--server", f"127.0.0.1:{served.port}", "--tls", "--pipeline", "--auth", "PLAIN"]
        else:
            options = ["--server", f"127.0.0.1:{served.implicit_port}", "--tlsc", "--auth", "LOGIN"]
        process = await asyncio.create_subprocess_exec(
            "swaks", *options, "--tls-verify", "--tls-ca-path", str(tls.cert), "--auth-user", USER,
            "--auth-password", PASS, "--to", TO, "--from", FROM, "--header", "Subject: from swaks",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)  # fmt: skip
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    (delivery,) = handler.deliveries
    assert (delivery.identity, delivery.mail_from, delivery.recipients) == (IDENTITY, FROM, (TO,))
    assert email.message_from_bytes(delivery.data)["Subject"] == "from swaks"
    assert delivery.peer.is_tls


async def test_fifty_concurrent_sessions_of_five_messages() -> None:
    handler = FakeHandler()
    async with serving(handler) as served:

        async def session(n: int) -> None:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=served.port, start_tls=False) as smtp:
                await smtp.login(USER, PASS)
                for i in range(5):
                    await smtp.sendmail(FROM, [TO], f"Subject: {n}-{i}\r\n\r\nbody\r\n")

        await asyncio.gather(*(session(n) for n in range(50)))
        await async_wait_for(lambda: _no_connections(served.server))
    subjects = [email.message_from_bytes(d.data)["Subject"] for d in handler.deliveries]
    assert len(subjects) == 250
    assert set(subjects) == {f"{n}-{i}" for n in range(50) for i in range(5)}


async def _no_connections(server: SmtpServer) -> bool:
    return server.connection_count == 0


# --- Trust, AUTH and TLS -------------------------------------------------------------------------------


async def test_ehlo_and_greeting(tls: TLSFiles) -> None:
    async with serving(FakeHandler(), tls) as served, raw(served.port) as client:
        reply = await client.command("EHLO client.test")
        assert reply.split("\n")[0] == f"250-{HOST}"
        assert ehlo_keywords(reply) == ["PIPELINING", "SIZE 10485760", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                                        "STARTTLS", "AUTH PLAIN LOGIN"]  # fmt: skip
        assert await client.command("HELO client.test") == f"250 {HOST}"


async def test_without_ssl_context_no_starttls(tls: TLSFiles) -> None:
    async with serving(FakeHandler()) as served, raw(served.port) as client:
        assert "STARTTLS" not in ehlo_keywords(await client.command("EHLO client.test"))
        assert await client.command("STARTTLS") == str(r.S502_NOT_IMPLEMENTED)
    server = SmtpServer(FakeHandler(), SmtpServerConfig(hostname=HOST), None)
    with pytest.raises(ValueError, match="ssl_context"):
        await server.start([Listener("127.0.0.1", 0, implicit_tls=True)])


async def test_trusted_network_submits_without_auth() -> None:
    handler = FakeHandler(trusted={"127.0.0.1"})
    async with serving(handler) as served, raw(served.port) as client:
        await client.command("EHLO client.test")
        client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\nx\r\n.\r\n")
        assert await client.replies(4) == ["250 2.1.0 Ok", "250 2.1.5 Ok", str(r.S354_DATA),
                                           "250 2.0.0 Ok: queued as 1"]  # fmt: skip
    assert handler.deliveries[0].identity == NETWORK_IDENTITY


async def test_mail_without_auth_is_530() -> None:
    handler = FakeHandler()
    async with serving(handler) as served, raw(served.port) as client:
        await client.command("EHLO client.test")
        client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\n")
        assert await client.replies(3) == [str(r.S530_AUTH_REQUIRED), str(r.S503_NEED_MAIL), str(r.S503_NEED_MAIL)]
    assert handler.deliveries == []


async def test_wrong_password_is_535() -> None:
    handler = FakeHandler()
    async with serving(handler) as served, raw(served.port) as client:
        await client.command("EHLO client.test")
        assert await client.command(BAD_AUTH) == "535 5.7.8 Authentication credentials invalid"
        assert await client.command(f"MAIL FROM:<{FROM}>") == str(r.S530_AUTH_REQUIRED)
    assert handler.deliveries == []


async def test_auth_before_starttls_from_an_outside_address_is_538(tls: TLSFiles) -> None:
    handler = FakeHandler()
    networks = (ipaddress_network("127.0.0.1/32"),)
    async with serving(handler, tls, plaintext_auth_networks=networks) as served:
        async with raw(served.port, source="127.0.0.2") as client:
            keywords = ehlo_keywords(await client.command("EHLO client.test"))
            assert "STARTTLS" in keywords
            assert not any(keyword.startswith("AUTH") for keyword in keywords)
            assert await client.command(AUTH) == "538 5.7.11 Encryption required for requested authentication mechanism"
            assert handler.auth_calls == 0
            await client.starttls(tls.client)
            assert "AUTH PLAIN LOGIN" in ehlo_keywords(await client.command("EHLO client.test"))
            assert await client.command(AUTH) == str(r.S235_AUTH_SUCCESS)
        async with raw(served.port) as client:  # from 127.0.0.1: a plaintext-auth network
            assert "AUTH PLAIN LOGIN" in ehlo_keywords(await client.command("EHLO client.test"))
            assert await client.command(AUTH) == str(r.S235_AUTH_SUCCESS)
    assert handler.deliveries == []


def ipaddress_network(text: str):  # type: ignore[no-untyped-def]
    import ipaddress

    return ipaddress.ip_network(text)


async def test_starttls_resets_the_session_but_keeps_network_trust(tls: TLSFiles) -> None:
    handler = FakeHandler(trusted={"127.0.0.1"})
    async with serving(handler, tls) as served, raw(served.port) as client:
        await client.login()
        await client.starttls(tls.client)
        assert await client.command(f"MAIL FROM:<{FROM}>") == str(r.S503_NEED_HELO)  # RFC 3207 §4.2
        assert "STARTTLS" not in ehlo_keywords(await client.command("EHLO client.test"))
        assert await client.command("STARTTLS") == str(r.S503_TLS_ACTIVE)
        client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\nx\r\n.\r\n")
        assert (await client.replies(4))[-1] == "250 2.0.0 Ok: queued as 1"
    (delivery,) = handler.deliveries
    assert delivery.identity == NETWORK_IDENTITY  # the AUTH identity was forgotten with the plaintext
    assert delivery.peer.is_tls


async def test_failed_auth_replies_are_delayed_per_address_across_sessions() -> None:
    handler = FakeHandler()
    async with serving(handler, auth_failure_free=3, auth_failure_max_delay=1.0) as served:

        async def timed(client: RawClient, line: str) -> tuple[str, float]:
            start = time.monotonic()
            reply = await client.command(line)
            return reply, time.monotonic() - start

        async with raw(served.port) as client:
            await client.command("EHLO client.test")
            for _ in range(3):
                reply, elapsed = await timed(client, BAD_AUTH)
                assert reply == str(r.S535_AUTH_INVALID)
                assert elapsed < 0.5
            reply, elapsed = await timed(client, BAD_AUTH)  # the 4th: 1 s
            assert reply == str(r.S535_AUTH_INVALID)
            assert elapsed >= 0.9
        async with raw(served.port) as client:
            await client.command("EHLO client.test")
            reply, elapsed = await timed(client, BAD_AUTH)  # the 5th, in another session: 2 s, capped at 1
            assert (reply, elapsed >= 0.9) == (str(r.S535_AUTH_INVALID), True)
            reply, elapsed = await timed(client, AUTH)  # success is never delayed, and clears the count
            assert (reply, elapsed < 0.5) == (str(r.S235_AUTH_SUCCESS), True)
        async with raw(served.port) as client:
            await client.command("EHLO client.test")
            reply, elapsed = await timed(client, BAD_AUTH)
            assert (reply, elapsed < 0.5) == (str(r.S535_AUTH_INVALID), True)


async def test_credentials_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-token-value"
    handler = FakeHandler()
    async with serving(handler) as served, raw(served.port) as client:
        await client.command("EHLO client.test")
        assert await client.command(f"AUTH PLAIN {plain(secret, secret)}") == str(r.S535_AUTH_INVALID)
        handler.fail_auth = True  # raises KeyError(password)
        assert await client.command(f"AUTH PLAIN {plain(secret, secret)}") == str(r.S454_AUTH_TEMPORARY_FAILURE)
        assert await client.command("AUTH LOGIN") == str(r.S334_USERNAME)
        assert await client.command(base64.b64encode(secret.encode()).decode()) == str(r.S334_PASSWORD)
        assert await client.command(base64.b64encode(secret.encode()).decode()) == str(r.S454_AUTH_TEMPORARY_FAILURE)
    assert "authenticate() raised KeyError" in caplog.text
    assert secret not in caplog.text
    assert base64.b64encode(secret.encode()).decode() not in caplog.text


# --- Refusals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "replies"),
    [
        (["MAIL FROM:app@example.com"], [r.S501_SYNTAX_MAIL]),
        (["MAIL FROM:<app example.com>"], [r.S501_BAD_SENDER]),
        (["MAIL FROM:<app@example.com> XFOO=1"], [r.S555_UNKNOWN_MAIL_PARAMETER]),
        (["MAIL FROM:<dé@example.com>"], [r.S553_SMTPUTF8_REQUIRED]),
        (["RCPT TO:<user@example.net>"], [r.S503_NEED_MAIL]),
        (["DATA"], [r.S503_NEED_MAIL]),
        (["MAIL FROM:<app@example.com>", "MAIL FROM:<app@example.com>"], [r.S250_SENDER_OK, r.S503_NESTED_MAIL]),
        (["MAIL FROM:<app@example.com>", "RCPT TO:user"], [r.S250_SENDER_OK, r.S501_SYNTAX_RCPT]),
        (["MAIL FROM:<app@example.com>", "RCPT TO:<nobody>"], [r.S250_SENDER_OK, r.S501_BAD_RECIPIENT]),
        (["MAIL FROM:<app@example.com>", "DATA"], [r.S250_SENDER_OK, r.S503_NEED_RCPT]),
        (["BDAT 3 LAST"], [r.S500_UNRECOGNIZED]),
        (["XYZZY"], [r.S500_UNRECOGNIZED]),
        ([""], [r.S500_EMPTY]),
        (["NOOP " + "x" * 600], [r.S500_LINE_TOO_LONG]),
        (["AUTH PLAIN"], [r.S503_ALREADY_AUTHENTICATED]),
        (["AUTH"], [r.S503_ALREADY_AUTHENTICATED]),
        (["STARTTLS"], [r.S502_NOT_IMPLEMENTED]),
        (["VRFY postmaster", "HELP", "RSET", "NOOP"], [r.S252_CANNOT_VRFY, r.S214_HELP, r.S250_OK, r.S250_OK]),
    ],
)
async def test_malformed_and_out_of_order_commands(lines: list[str], replies: list[SmtpReply]) -> None:
    handler = FakeHandler()
    async with serving(handler) as served, raw(served.port) as client:
        await client.login()
        assert [await client.command(line) for line in lines] == [str(reply) for reply in replies]
    assert handler.deliveries == []


async def test_auth_refusals() -> None:
    handler = FakeHandler()
    async with serving(handler) as served, raw(served.port) as client:
        assert await client.command(AUTH) == str(r.S503_NEED_EHLO)
        await client.command("EHLO client.test")
        assert await client.command("AUTH CRAM-MD5") == "504 5.5.4 Unrecognized authentication type"
        assert await client.command("AUTH PLAIN ***") == "501 5.5.2 Cannot decode response"
        assert await client.command("AUTH PLAIN") == "334 "
        assert await client.command("*") == "501 5.0.0 Authentication cancelled"
        assert await client.command(AUTH) == str(r.S235_AUTH_SUCCESS)
        assert await client.command(AUTH) == "503 5.5.1 Error: already authenticated"
    assert handler.auth_calls == 1


async def test_oversized_by_size_parameter_and_by_content() -> None:
    handler = FakeHandler()
    async with serving(handler, max_message_size=1000) as served, raw(served.port) as client:
        await client.login()
        too_big = await client.command(f"MAIL FROM:<{FROM}> SIZE=1001")
        assert too_big == "552 5.3.4 Message size exceeds fixed maximum message size"
        client.send(f"MAIL FROM:<{FROM}> SIZE=900\r\nRCPT TO:<{TO}>\r\nDATA\r\n")
        assert await client.replies(3) == ["250 2.1.0 Ok", "250 2.1.5 Ok", str(r.S354_DATA)]
        for _ in range(100):  # 100 kB against a 1000-octet limit
            client.send(b"z" * 998 + b"\r\n")
        client.send(".\r\n")
        assert await client.reply() == str(r.S552_TOO_BIG)
        assert await client.command("NOOP") == str(r.S250_OK)
    assert handler.deliveries == []


async def test_too_many_recipients() -> None:
    handler = FakeHandler()
    async with serving(handler, max_recipients=2) as served, raw(served.port) as client:
        await client.login()
        client.send(f"MAIL FROM:<{FROM}>\r\n" + "".join(f"RCPT TO:<r{i}@example.org>\r\n" for i in range(3)))
        assert await client.replies(4) == ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok",
                                           "452 4.5.3 Too many recipients"]  # fmt: skip
        client.send("DATA\r\nx\r\n.\r\n")
        assert await client.replies(2) == [str(r.S354_DATA), "250 2.0.0 Ok: queued as 1"]
    assert handler.deliveries[0].recipients == ("r0@example.org", "r1@example.org")


async def test_command_timeout() -> None:
    handler = FakeHandler()
    async with serving(handler, command_timeout=0.5) as served, raw(served.port) as client:
        start = time.monotonic()
        assert await client.command("NOOP") == str(r.S250_OK)
        assert await client.reply() == f"421 4.4.2 {HOST} Error: timeout exceeded"
        assert 0.4 < time.monotonic() - start < 2
        assert await client.at_eof()


async def test_data_timeout_covers_the_whole_data_phase() -> None:
    handler = FakeHandler()
    async with serving(handler, command_timeout=5, data_timeout=0.5) as served, raw(served.port) as client:
        await client.login()
        client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\n")
        await client.replies(3)
        start = time.monotonic()

        async def trickle() -> None:
            with contextlib.suppress(OSError):
                for _ in range(30):
                    client.send("a line, slowly\r\n")
                    await asyncio.sleep(0.1)

        sender = asyncio.create_task(trickle())
        assert await client.reply() == f"421 4.4.2 {HOST} Error: timeout exceeded"
        assert time.monotonic() - start < 2
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    assert handler.deliveries == []


async def test_handler_raising_is_451_and_the_session_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    handler = FakeHandler(fail_deliver=True)
    async with serving(handler) as served, raw(served.port) as client:
        await client.login()
        client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\nx\r\n.\r\n")
        assert await client.replies(4) == ["250 2.1.0 Ok", "250 2.1.5 Ok", str(r.S354_DATA),
                                           "451 4.3.0 Internal error, try again later"]  # fmt: skip
        handler.fail_deliver = False
        client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\ny\r\n.\r\n")
        assert (await client.replies(4))[-1] == "250 2.0.0 Ok: queued as 1"
    assert [d.data for d in handler.deliveries] == [b"y\r\n"]
    assert "deliver() failed" in caplog.text
    assert "database is down" in caplog.text


async def test_identify_network_raising_is_421_at_connect() -> None:
    handler = FakeHandler(fail_identify=True)
    async with serving(handler) as served:
        client = await RawClient.connect(served.port, greeting=False)
        assert await client.reply() == "421 4.3.0 Internal error, try again later"
        assert await client.at_eof()
        await client.close()


async def test_too_many_errors() -> None:
    async with serving(FakeHandler(), max_errors=3) as served, raw(served.port) as client:
        client.send("FOO\r\n" * 4 + "NOOP\r\n")
        assert await client.replies(4) == [str(r.S500_UNRECOGNIZED)] * 3 + ["421 4.7.0 Too many errors"]
        assert await client.at_eof()


async def test_max_connections() -> None:
    async with serving(FakeHandler(), max_connections=2) as served:
        first = await RawClient.connect(served.port)
        second = await RawClient.connect(served.port)
        third = await RawClient.connect(served.port, greeting=False)
        assert await third.reply() == "421 4.7.0 Too many connections, try again later"
        assert await third.at_eof()
        assert served.server.connection_count == 2
        await first.close()
        await async_wait_for(lambda: _connections_are(served.server, 1))
        fourth = await RawClient.connect(served.port)  # room again
        for client in (second, third, fourth):
            await client.close()


async def _connections_are(server: SmtpServer, count: int) -> bool:
    return server.connection_count == count


async def test_pipelined_input_is_not_buffered_without_bound_while_a_delivery_is_out() -> None:
    handler = FakeHandler(hold=asyncio.Event())
    assert handler.hold is not None
    line = b"NOOP " + b"x" * 500 + b"\r\n"
    count = 32_000  # 16 MB: more than the socket buffers on both sides hold
    async with serving(handler) as served, raw(served.port) as client:
        await client.login()
        client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\nx\r\n.\r\n")
        await client.replies(3)
        await asyncio.wait_for(handler.holding.wait(), 5)
        client.send(line * count)
        with pytest.raises(AssertionError, match="not met"):  # the server stops reading: it never drains
            await async_wait_for(_client_drained(client), timeout=0.5)
        (connection,) = served.server._connections
        assert connection._session is not None
        assert connection._session.buffered < 1024 * 1024
        handler.hold.set()
        assert await client.reply() == "250 2.0.0 Ok: queued as 1"
        replies = await client.replies(count)  # every pipelined command, in order, once reading resumed
        assert set(replies) == {str(r.S250_OK)}


def _client_drained(client: RawClient):  # type: ignore[no-untyped-def]
    async def drained() -> bool:
        return client.writer.transport.get_write_buffer_size() == 0

    return drained


async def test_failed_tls_handshakes_free_their_connections(tls: TLSFiles) -> None:
    async with serving(FakeHandler(), tls, implicit=True) as served:
        async with raw(served.port) as client:
            await client.command("EHLO client.test")
            assert await client.command("STARTTLS") == str(r.S220_READY_TLS)
            client.send(b"this is not a TLS ClientHello\r\n" * 10)
            assert await client.at_eof()
        assert served.implicit_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", served.implicit_port)
        writer.write(b"EHLO plaintext.on.an.implicit.port\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await async_wait_for(lambda: _connections_are(served.server, 0))


# --- Listening and stopping --------------------------------------------------------------------------


async def test_start_reports_bound_addresses_and_raises_oserror() -> None:
    async with serving(FakeHandler()) as served:
        other = SmtpServer(FakeHandler(), SmtpServerConfig(hostname=HOST), None)
        with pytest.raises(OSError):  # noqa: PT011 - whatever errno the platform gives
            await other.start([Listener("127.0.0.1", served.port)])
        await other.stop()


async def test_start_on_sockets() -> None:
    handler = FakeHandler()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = SmtpServer(handler, SmtpServerConfig(hostname=HOST), None)
    await server.start_on_sockets([(sock, False)])
    try:
        async with raw(port) as client:
            assert await client.command("NOOP") == str(r.S250_OK)
    finally:
        await server.stop()


async def test_stop_lets_a_delivery_in_flight_answer_and_closes_idle_sessions() -> None:
    handler = FakeHandler(hold=asyncio.Event())
    assert handler.hold is not None
    async with serving(handler) as served:
        idle = await RawClient.connect(served.port)
        await idle.command("EHLO client.test")
        busy = await RawClient.connect(served.port)
        await busy.login()
        busy.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n")
        assert await busy.replies(3) == ["250 2.1.0 Ok", "250 2.1.5 Ok", str(r.S354_DATA)]
        await asyncio.wait_for(handler.holding.wait(), 5)

        stopping = asyncio.create_task(served.server.stop(grace=5))
        assert await idle.reply() == "421 4.3.2 Service shutting down"
        assert await idle.at_eof()
        assert not stopping.done()
        with pytest.raises(OSError):  # noqa: PT011 - not listening any more
            await asyncio.open_connection("127.0.0.1", served.port)
        handler.hold.set()
        # The delivery's answer, then the 421: the pipelined NOOP is not worked through.
        assert await busy.replies(2) == ["250 2.0.0 Ok: queued as 1", "421 4.3.2 Service shutting down"]
        assert await busy.at_eof()
        await asyncio.wait_for(stopping, 5)
        for client in (idle, busy):
            await client.close()
    assert len(handler.deliveries) == 1


async def test_stop_cuts_off_what_outlasts_the_grace() -> None:
    handler = FakeHandler(hold=asyncio.Event())  # never released
    async with serving(handler) as served:
        client = await RawClient.connect(served.port)
        await client.login()
        client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\nx\r\n.\r\n")
        await client.replies(3)
        await asyncio.wait_for(handler.holding.wait(), 5)
        start = time.monotonic()
        await served.server.stop(grace=0.3)
        assert time.monotonic() - start < 2
        with contextlib.suppress(ConnectionError):
            assert await client.at_eof()
        await client.close()
    assert handler.deliveries == []


# --- uvloop -------------------------------------------------------------------------------------------------


async def _uvloop_scenarios(tls: TLSFiles) -> None:
    handler = FakeHandler(hold=None)
    async with serving(handler, tls, implicit=True, command_timeout=0.5) as served:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=served.port, start_tls=True, tls_context=tls.client)
        async with smtp:
            await smtp.login(USER, PASS)
            for i in range(3):
                await smtp.sendmail(FROM, [TO], f"Subject: {i}\r\n\r\nbody\r\n")
        assert served.implicit_port is not None
        await aiosmtplib.send(b"Subject: implicit\r\n\r\nbody\r\n", sender=FROM, recipients=[TO],
                              hostname="127.0.0.1", port=served.implicit_port, use_tls=True,
                              tls_context=tls.client, username=USER, password=PASS)  # fmt: skip
        async with raw(served.port) as client:
            await client.login()
            client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\nraw\r\n.\r\n")
            assert (await client.replies(4))[-1] == "250 2.0.0 Ok: queued as 5"
            assert await client.reply() == f"421 4.4.2 {HOST} Error: timeout exceeded"
        async with raw(served.port) as client:
            await client.command("EHLO client.test")
            assert await client.command("STARTTLS") == str(r.S220_READY_TLS)
            client.send(b"not a handshake\r\n" * 10)
            assert await client.at_eof()
        await async_wait_for(lambda: _connections_are(served.server, 0))
        handler.hold = asyncio.Event()
        async with raw(served.port) as client:
            await client.login()
            client.send(f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\nlast\r\n.\r\n")
            await client.replies(3)
            await asyncio.wait_for(handler.holding.wait(), 5)
            stopping = asyncio.create_task(served.server.stop(grace=5))
            await asyncio.sleep(0)
            handler.hold.set()
            assert await client.replies(2) == ["250 2.0.0 Ok: queued as 6", str(r.S421_SHUTTING_DOWN)]
            await stopping
    assert [d.data.split(b"\r\n")[0] for d in handler.deliveries] == [
        b"Subject: 0", b"Subject: 1", b"Subject: 2", b"Subject: implicit", b"raw", b"last"]  # fmt: skip


def test_on_uvloop(tls: TLSFiles) -> None:
    """Production runs uvloop, whose transports are not asyncio's: STARTTLS, implicit TLS, timers, stop."""
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(_uvloop_scenarios(tls))
