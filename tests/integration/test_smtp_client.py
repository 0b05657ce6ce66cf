"""The delivery SMTP client against real peers on loopback: aiosmtpd, a scripted pipelining peer,
and aiosmtplib as the oracle for what should arrive."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_peers import (
    CLOSE,
    HANG,
    RecordingSink,
    ScriptedPeer,
    make_tls_contexts,
)

from posthouse.server.delivery.smtp_client import (
    Reply,
    SendResult,
    SMTPAuthenticationError,
    SMTPClient,
    normalize_line_endings,
    stuff_dots,
)
from posthouse.server.errors import DeliveryError
from support import async_wait_for, free_port

SENDER = "sender@example.com"
ALICE = "alice@example.net"
BOB = "bob@example.net"
NOBODY = "nobody@example.net"

MESSAGE = (
    b"From: sender@example.com\r\nTo: alice@example.net\r\nSubject: hello\r\n\r\n"
    b".a line that starts with a dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"a lone dot above, 8-bit below\r\n"
    b"caf\xc3\xa9\r\n"
)

# 4 MiB, every body line dot-stuffed on the wire: big enough to be written in chunks.
BIG = b"Subject: big\r\n\r\n" + (b"." + b"z" * 70 + b"\r\n") * 60_000


# --- Fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return make_tls_contexts(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink() as sink:
        yield sink


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer() as peer:
        yield peer


@pytest.fixture(params=["aiosmtpd", "pipelining"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[RecordingSink | ScriptedPeer]:
    """Both kinds of peer: aiosmtpd (one command at a time) and the pipelining ScriptedPeer."""
    if request.param == "aiosmtpd":
        with RecordingSink() as sink:
            yield sink
    else:
        async with ScriptedPeer() as peer:
            yield peer


def client_for(server: Any, **options: Any) -> SMTPClient:
    """A client for `server` with timeouts short enough that a hung test fails quickly."""
    options.setdefault("helo_name", "client.test")
    options.setdefault("connect_timeout", 5)
    options.setdefault("command_timeout", 5)
    return SMTPClient(server.host, server.port, **options)


@contextlib.asynccontextmanager
async def connected(server: Any, **options: Any) -> AsyncIterator[SMTPClient]:
    client = client_for(server, **options)
    greeting = await client.connect()
    assert greeting.code == 220, greeting
    try:
        yield client
    finally:
        await client.quit()


def codes(result: SendResult) -> dict[str, int]:
    return {rcpt: reply.code for rcpt, reply in result.recipients.items()}


def group_read(peer: ScriptedPeer) -> bytes:
    """The read that carried MAIL FROM (the first one)."""
    return next(chunk for chunk in peer.reads if chunk.startswith((b"MAIL", b"RSET")))


# --- Replies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "text", "positive", "transient", "permanent"),
    [
        (Reply(250, "2.0.0 Ok", "2.0.0"), "250 2.0.0 Ok", True, False, False),
        (Reply(354, "go ahead"), "354 go ahead", True, False, False),
        (Reply(451, "4.3.0 later", "4.3.0"), "451 4.3.0 later", False, True, False),
        (Reply(550, "5.1.1 No such user", "5.1.1"), "550 5.1.1 No such user", False, False, True),
        (Reply(221, ""), "221", True, False, False),
    ],
)
def test_reply_text_and_class(reply: Reply, text: str, positive: bool, transient: bool, permanent: bool) -> None:
    assert str(reply) == text
    assert (reply.is_positive, reply.is_transient, reply.is_permanent) == (
        positive,
        transient,
        permanent,
    )


@pytest.mark.parametrize(
    ("raw", "code", "text", "enhanced"),
    [
        ("250 2.1.0 Ok", 250, "2.1.0 Ok", "2.1.0"),
        ("250 Ok", 250, "Ok", None),
        ("250", 250, "", None),
        ("250 2.1.0", 250, "2.1.0", "2.1.0"),
        ("250 2.1.0.5 not one", 250, "2.1.0.5 not one", None),
        ("250 5.7.1000 too long", 250, "5.7.1000 too long", None),
        ("250-2.1.0 first\r\n250-second\r\n250 third", 250, "2.1.0 first\nsecond\nthird", "2.1.0"),
        ("250-first\r\n250 2.1.0 second", 250, "first\n2.1.0 second", None),
        ("250 caf\xe9 \xff", 250, "caf\xe9 \xff", None),
    ],
)
async def test_reply_parsing(peer: ScriptedPeer, raw: str, code: int, text: str, enhanced: str | None) -> None:
    peer.replies["MAIL"] = [raw]
    async with connected(peer) as client:
        result = await client.send(SENDER, [ALICE], b"Subject: x\r\n\r\nhi\r\n")
    assert result.mail_from == Reply(code, text, enhanced)


async def test_reply_with_invalid_utf8_is_decoded_with_replacement(peer: ScriptedPeer) -> None:
    peer.replies["MAIL"] = ["250 ok \udcff"]  # the peer writes the lone byte 0xff
    async with connected(peer) as client:
        result = await client.send(SENDER, [ALICE], b"\r\n")
    assert result.mail_from.text == "ok \ufffd"


@pytest.mark.parametrize(
    "raw",
    [
        "hello",
        "25 ok",
        "2500 ok",
        "250_ok",
        "650 no such class",
        "abc ok",
        "250-first\r\n251 second",
        "250-" + "x" * 20_000,
    ],
)
async def test_malformed_reply_raises_and_closes(peer: ScriptedPeer, raw: str) -> None:
    peer.replies["MAIL"] = [raw]
    async with connected(peer) as client:
        with pytest.raises(DeliveryError, match=r"malformed|longer than"):
            await client.send(SENDER, [ALICE], b"\r\n")
        assert not client.is_connected


# --- Plain delivery ---------------------------------------------------------------------------


async def test_delivers_envelope_and_exact_bytes(sink: RecordingSink) -> None:
    async with connected(sink) as client:
        result = await client.send(SENDER, [ALICE, BOB], MESSAGE)
        assert client.messages_sent == 1
    assert result.mail_from.code == 250
    assert result.data is not None
    assert result.data.code == 250
    assert codes(result) == {ALICE: 250, BOB: 250}
    [message] = sink.messages
    assert message.mail_from == SENDER
    assert message.rcpt_tos == [ALICE, BOB]
    assert message.data == MESSAGE
    # RFC 1870 SIZE counts the message before dot-stuffing; 8-bit data asks for 8BITMIME.
    assert message.mail_options == [f"SIZE={len(MESSAGE)}", "BODY=8BITMIME"]


async def test_ascii_message_does_not_ask_for_8bitmime(sink: RecordingSink) -> None:
    async with connected(sink) as client:
        await client.send(SENDER, [ALICE], b"Subject: x\r\n\r\nplain\r\n")
    assert sink.messages[0].mail_options == ["SIZE=21"]


async def test_extensions_are_lowercased_keywords(sink: RecordingSink) -> None:
    async with connected(sink) as client:
        assert client.extensions["size"] == "33554432"
        assert {"8bitmime", "smtputf8"} <= client.extensions.keys()
        assert "pipelining" not in client.extensions


async def test_message_without_final_crlf_and_with_bare_line_endings(sink: RecordingSink) -> None:
    async with connected(sink) as client:
        await client.send(SENDER, [ALICE], b"Subject: x\n\n.first\nsecond\rthird")
    assert sink.messages[0].data == b"Subject: x\r\n\r\n.first\r\nsecond\r\nthird\r\n"


async def test_large_message_is_written_in_chunks(sink: RecordingSink) -> None:
    async with connected(sink) as client:
        result = await client.send(SENDER, [ALICE], BIG)
    assert result.data is not None
    assert result.data.code == 250
    assert sink.messages[0].data == BIG


async def test_null_reverse_path(peer: ScriptedPeer) -> None:
    async with connected(peer) as client:
        result = await client.send("", [ALICE], b"Subject: bounce\r\n\r\n")
    assert result.data is not None
    assert peer.commands[1].startswith("MAIL FROM:<> ")


async def test_duplicate_recipients_are_sent_once(peer: ScriptedPeer) -> None:
    async with connected(peer) as client:
        result = await client.send(SENDER, [ALICE, BOB, ALICE], b"\r\n")
    assert list(result.recipients) == [ALICE, BOB]
    assert peer.messages[0].rcpt_tos == [ALICE, BOB]


# --- Pipelining (RFC 2920) --------------------------------------------------------------------


async def test_pipelining_writes_mail_rcpts_and_data_at_once(peer: ScriptedPeer) -> None:
    data = b"Subject: x\r\n\r\nbody\r\n"
    async with connected(peer) as client:
        result = await client.send(SENDER, [ALICE, BOB], data)
    assert codes(result) == {ALICE: 250, BOB: 250}
    # One read held the whole group: nothing waited for a reply in between.
    assert peer.reads[1] == (
        f"MAIL FROM:<{SENDER}> SIZE={len(data)}\r\nRCPT TO:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n".encode()
    )
    assert peer.reads[2] == data + b".\r\n"
    assert peer.messages[0].data == data


async def test_aiosmtplib_does_not_pipeline(peer: ScriptedPeer) -> None:
    # The control for the test above: a client that waits for each reply fails its assertion.
    smtp = aiosmtplib.SMTP(hostname=peer.host, port=peer.port, start_tls=False)
    async with smtp:
        await smtp.sendmail(SENDER, [ALICE, BOB], b"Subject: x\r\n\r\nbody\r\n")
    assert group_read(peer).startswith(b"MAIL FROM:")
    assert b"RCPT" not in group_read(peer)


async def test_without_pipelining_one_command_per_read() -> None:
    async with ScriptedPeer(extensions=["8BITMIME"]) as peer:
        async with connected(peer) as client:
            result = await client.send(SENDER, [ALICE, BOB], b"Subject: x\r\n\r\n")
        assert codes(result) == {ALICE: 250, BOB: 250}
        assert peer.reads[1:6] == [
            f"MAIL FROM:<{SENDER}>\r\n".encode(),
            f"RCPT TO:<{ALICE}>\r\n".encode(),
            f"RCPT TO:<{BOB}>\r\n".encode(),
            b"DATA\r\n",
            b"Subject: x\r\n\r\n.\r\n",
        ]


# --- Refusals are values ----------------------------------------------------------------------


async def test_refused_recipient_keeps_its_reply(server: RecordingSink | ScriptedPeer) -> None:
    server.rcpt_replies[NOBODY] = "550 5.1.1 No such user"
    async with connected(server) as client:
        result = await client.send(SENDER, [ALICE, NOBODY, BOB], MESSAGE)
    assert codes(result) == {ALICE: 250, NOBODY: 550, BOB: 250}
    assert result.recipients[NOBODY] == Reply(550, "5.1.1 No such user", "5.1.1")
    assert result.recipients[ALICE] is result.data
    assert server.messages[0].rcpt_tos == [ALICE, BOB]


async def test_data_451_is_transient_for_every_accepted_recipient(sink: RecordingSink) -> None:
    sink.script.append("451 4.3.0 try later")
    sink.rcpt_replies[NOBODY] = "550 5.1.1 No such user"
    async with connected(sink) as client:
        result = await client.send(SENDER, [ALICE, NOBODY, BOB], MESSAGE)
        assert result.data == Reply(451, "4.3.0 try later", "4.3.0")
        assert result.recipients[ALICE].is_transient
        assert result.recipients[BOB].is_transient
        assert result.recipients[NOBODY].is_permanent
        assert not sink.messages
        # The transaction ended with the final reply: the next one needs no RSET.
        again = await client.send(SENDER, [ALICE], MESSAGE)
    assert again.data is not None
    assert again.data.code == 250
    assert len(sink.messages) == 1


@pytest.mark.parametrize("extensions", [["PIPELINING"], []], ids=["pipelined", "serial"])
async def test_mail_refused_answers_every_recipient(extensions: list[str]) -> None:
    refusal = Reply(550, "5.7.1 Sender blocked", "5.7.1")
    async with ScriptedPeer(extensions=extensions, replies={"MAIL": [str(refusal)]}) as peer:
        async with connected(peer) as client:
            result = await client.send(SENDER, [ALICE, BOB], MESSAGE)
            assert result == SendResult(refusal, {ALICE: refusal, BOB: refusal}, None)
            again = await client.send(SENDER, [ALICE], MESSAGE)
        assert again.data is not None
        assert again.data.code == 250
        verbs = [command.split()[0] for command in peer.commands]
        if extensions:
            assert verbs == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "MAIL", "RCPT", "DATA", "QUIT"]
        else:  # one at a time: nothing after the refused MAIL, and no RSET needed after it
            assert verbs == ["EHLO", "MAIL", "MAIL", "RCPT", "DATA", "QUIT"]


async def test_no_accepted_recipient_sends_no_data_and_resets_next_time(
    server: RecordingSink | ScriptedPeer,
) -> None:
    server.rcpt_replies[NOBODY] = "550 5.1.1 No such user"
    async with connected(server) as client:
        result = await client.send(SENDER, [NOBODY], MESSAGE)
        assert result.data is None
        assert result.mail_from.code == 250
        assert codes(result) == {NOBODY: 550}
        # aiosmtpd answers a second MAIL without RSET with "503 nested MAIL command".
        again = await client.send(SENDER, [ALICE], MESSAGE)
        assert codes(again) == {ALICE: 250}
    assert [message.rcpt_tos for message in server.messages] == [[ALICE]]
    if isinstance(server, ScriptedPeer):
        # RFC 2920 §3.1: the RSET travels in the next group, ahead of MAIL.
        assert group_read(server) == (
            f"MAIL FROM:<{SENDER}> SIZE={len(MESSAGE)} BODY=8BITMIME\r\nRCPT TO:<{NOBODY}>\r\nDATA\r\n".encode()
        )
        assert any(chunk.startswith(b"RSET\r\nMAIL FROM:") for chunk in server.reads)
        assert MESSAGE not in b"".join(server.reads[:3])


async def test_explicit_reset_clears_the_pending_rset(peer: ScriptedPeer) -> None:
    peer.rcpt_replies[NOBODY] = "550 5.1.1 No such user"
    async with connected(peer) as client:
        await client.send(SENDER, [NOBODY], b"\r\n")
        await client.reset()
        await client.send(SENDER, [ALICE], b"\r\n")
    assert [command.split()[0] for command in peer.commands].count("RSET") == 1


async def test_354_without_recipients_is_ended_empty(peer: ScriptedPeer) -> None:
    # A broken server opens the data phase although it refused every recipient.
    peer.rcpt_replies[NOBODY] = "550 5.1.1 No such user"
    peer.replies["DATA"] = ["354 go ahead anyway"]
    async with connected(peer) as client:
        result = await client.send(SENDER, [NOBODY], MESSAGE)
        assert result.data is None
        assert codes(result) == {NOBODY: 550}
        await client.send(SENDER, [ALICE], b"Subject: second\r\n\r\n")
    assert peer.reads[2] == b".\r\n"
    assert b"RSET" not in b"".join(peer.reads)  # the transaction ended with the "."
    assert [m.data for m in peer.messages] == [b"", b"Subject: second\r\n\r\n"]


@pytest.mark.parametrize(
    ("replies", "expected", "data_code"),
    [
        ({"MAIL": [f"421 4.3.2 Shutting down{CLOSE}"]}, {NOBODY: 421, ALICE: 421, BOB: 421}, None),
        (
            {"RCPT": ["550 5.1.1 No such user", "250 2.1.5 Ok", f"421 4.3.2 Bye{CLOSE}"]},
            {NOBODY: 550, ALICE: 421, BOB: 421},
            None,
        ),
        ({"DATA": [f"421 4.3.2 Bye{CLOSE}"]}, {NOBODY: 421, ALICE: 421, BOB: 421}, 421),
        ({".": [f"421 4.3.2 Bye{CLOSE}"]}, {NOBODY: 421, ALICE: 421, BOB: 421}, 421),
        ({"RSET": [f"421 4.3.2 Bye{CLOSE}"]}, {NOBODY: 421, ALICE: 421, BOB: 421}, None),
    ],
    ids=["mail", "rcpt", "data", "end-of-data", "rset"],
)
async def test_421_answers_the_affected_recipients_and_closes(
    peer: ScriptedPeer, replies: dict[str, list[str]], expected: dict[str, int], data_code: int | None
) -> None:
    peer.replies.update(replies)
    async with connected(peer) as client:
        if "RSET" in replies:
            client._needs_reset = True  # as after a failed transaction
        result = await client.send(SENDER, [NOBODY, ALICE, BOB], MESSAGE)
        assert codes(result) == expected
        assert (result.data.code if result.data else None) == data_code
        assert not client.is_connected
        with pytest.raises(DeliveryError, match="not connected"):
            await client.send(SENDER, [ALICE], MESSAGE)
    assert not peer.messages


async def test_unsolicited_421_before_a_transaction() -> None:
    # The 421 arrives right behind the EHLO reply, as a server's idle timeout would send it.
    ehlo = "250-peer.test\r\n250 PIPELINING\r\n421 4.4.2 Idle timeout"
    async with ScriptedPeer(replies={"EHLO": [ehlo]}) as peer, connected(peer) as client:
        result = await client.send(SENDER, [ALICE], MESSAGE)
        assert codes(result) == {ALICE: 421}
        assert not client.is_connected
    assert not any(command.startswith("MAIL") for command in peer.commands)


# --- Broken conversations raise DeliveryError -------------------------------------------------


async def test_connection_dropped_mid_data_raises() -> None:
    async with ScriptedPeer(drop_in_data=True) as peer, connected(peer) as client:
        with pytest.raises(DeliveryError, match="send failed"):
            await client.send(SENDER, [ALICE], BIG)
        assert not client.is_connected


async def test_connection_dropped_before_final_reply_raises(peer: ScriptedPeer) -> None:
    peer.replies["."] = [CLOSE]
    async with connected(peer) as client:
        with pytest.raises(DeliveryError, match="closed by the peer"):
            await client.send(SENDER, [ALICE], MESSAGE)
        assert not client.is_connected


@pytest.mark.parametrize("command", ["MAIL", "."])
async def test_reply_timeout_raises(peer: ScriptedPeer, command: str) -> None:
    peer.replies[command] = [HANG]
    async with connected(peer, command_timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="no reply to"):
            await client.send(SENDER, [ALICE], MESSAGE)
        elapsed = time.monotonic() - started
        assert not client.is_connected
    # The end of data gets twice the command timeout (RFC 5321 §4.5.3.2.6).
    assert (0.4 if command == "MAIL" else 0.9) < elapsed < 3


async def test_greeting_timeout_raises() -> None:
    async with ScriptedPeer(replies={"GREETING": [HANG]}) as peer:
        client = client_for(peer, connect_timeout=0.3)
        with pytest.raises(DeliveryError, match=r"no greeting within 0\.3 s"):
            await client.connect()
        assert not client.is_connected


async def test_connection_refused_raises() -> None:
    client = SMTPClient("127.0.0.1", free_port(), helo_name="client.test", connect_timeout=2, command_timeout=2)
    with pytest.raises(DeliveryError, match="connect failed"):
        await client.connect()
    assert not client.is_connected


async def test_cancelled_send_closes_the_client(peer: ScriptedPeer) -> None:
    peer.replies["MAIL"] = [HANG]
    async with connected(peer) as client:
        task = asyncio.create_task(client.send(SENDER, [ALICE], MESSAGE))

        async def mail_sent() -> bool:
            return any(command.startswith("MAIL") for command in peer.commands)

        await async_wait_for(mail_sent, timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client.is_connected


async def test_quit_never_raises(peer: ScriptedPeer) -> None:
    peer.replies["QUIT"] = [HANG]
    client = client_for(peer, command_timeout=0.2)
    await client.connect()
    await client.quit()
    assert not client.is_connected
    await client.quit()  # twice is fine too
    peer.replies["."] = [CLOSE]
    await client.connect()
    with pytest.raises(DeliveryError):
        await client.send(SENDER, [ALICE], MESSAGE)
    await client.quit()


# --- Connecting: greeting, EHLO/HELO ----------------------------------------------------------


async def test_refusing_greeting_is_returned_and_quit() -> None:
    async with ScriptedPeer(replies={"GREETING": ["554 5.7.1 Go away"]}) as peer:
        client = client_for(peer)
        reply = await client.connect()
        assert reply == Reply(554, "5.7.1 Go away", "5.7.1")
        assert not client.is_connected
    assert peer.commands == ["QUIT"]


async def test_ehlo_421_is_returned() -> None:
    async with ScriptedPeer(replies={"EHLO": [f"421 4.7.0 Busy{CLOSE}"]}) as peer:
        client = client_for(peer)
        reply = await client.connect()
        assert reply.code == 421
        assert not client.is_connected


async def test_ehlo_refused_falls_back_to_helo() -> None:
    async with ScriptedPeer(replies={"EHLO": ["502 5.5.2 What?"]}) as peer:
        async with connected(peer) as client:
            assert client.extensions == {}
            result = await client.send(SENDER, [ALICE], b"Subject: x\r\n\r\n")
        assert codes(result) == {ALICE: 250}
        assert peer.commands[:3] == ["EHLO client.test", "HELO client.test", f"MAIL FROM:<{SENDER}>"]


# --- Addresses --------------------------------------------------------------------------------


async def test_smtputf8_address_when_offered(sink: RecordingSink) -> None:
    async with connected(sink) as client:
        result = await client.send(SENDER, ["usér@example.net"], b"Subject: x\r\n\r\n")
    assert codes(result) == {"usér@example.net": 250}
    assert sink.messages[0].rcpt_tos == ["usér@example.net"]
    assert "SMTPUTF8" in sink.messages[0].mail_options


async def test_non_ascii_address_without_smtputf8_is_refused_locally(peer: ScriptedPeer) -> None:
    async with connected(peer) as client:
        result = await client.send(SENDER, [ALICE, "usér@example.net"], MESSAGE)
    refusal = Reply(553, "5.6.7 Non-ASCII address and no SMTPUTF8 on the server", "5.6.7")
    assert result == SendResult(refusal, {ALICE: refusal, "usér@example.net": refusal}, None)
    assert peer.commands == ["EHLO client.test", "QUIT"]


async def test_address_with_line_break_cannot_inject_commands(peer: ScriptedPeer) -> None:
    evil = f"{BOB}>\r\nRCPT TO:<victim@example.org"
    async with connected(peer) as client:
        result = await client.send(SENDER, [ALICE, evil], MESSAGE)
        assert codes(result) == {ALICE: 250, evil: 553}
        assert result.recipients[evil].enhanced == "5.1.3"
        sender_result = await client.send(f"{SENDER}\r\nRSET", [ALICE], MESSAGE)
        assert codes(sender_result) == {ALICE: 553}
        assert sender_result.mail_from.enhanced == "5.1.7"
    assert not any("victim" in command or command == "RSET" for command in peer.commands)
    assert [message.rcpt_tos for message in peer.messages] == [[ALICE]]


async def test_concurrent_send_is_refused(peer: ScriptedPeer) -> None:
    async with connected(peer) as client:
        first = asyncio.create_task(client.send(SENDER, [ALICE], MESSAGE))
        await asyncio.sleep(0)  # let it start and wait for its replies
        with pytest.raises(RuntimeError, match="in progress"):
            await client.send(SENDER, [BOB], MESSAGE)
        assert codes(await first) == {ALICE: 250}


async def test_reconnect_after_the_server_hung_up(peer: ScriptedPeer) -> None:
    peer.replies["."] = [f"250 2.0.0 Ok{CLOSE}"]  # accepted, then the connection ends
    client = client_for(peer)
    await client.connect()
    assert codes(await client.send(SENDER, [ALICE], MESSAGE)) == {ALICE: 250}

    async def hung_up() -> bool:
        return not client.is_connected

    await async_wait_for(hung_up, timeout=5)
    await client.connect()
    assert codes(await client.send(SENDER, [BOB], MESSAGE)) == {BOB: 250}
    assert client.messages_sent == 1  # counted per connection
    await client.quit()
    assert peer.connections == 2


@pytest.mark.parametrize("helo_name", ["client.test\r\nMAIL FROM:<x>", "two words", "h\u00e9llo.test"])
def test_helo_name_is_checked(helo_name: str) -> None:
    with pytest.raises(ValueError, match="helo_name"):
        SMTPClient("127.0.0.1", 25, helo_name=helo_name)


async def test_send_needs_a_recipient_and_a_connection(peer: ScriptedPeer) -> None:
    client = client_for(peer)
    with pytest.raises(DeliveryError, match="not connected"):
        await client.send(SENDER, [ALICE], MESSAGE)
    async with connected(peer) as client:
        with pytest.raises(ValueError, match="at least one recipient"):
            await client.send(SENDER, [], MESSAGE)


# --- Connection reuse -------------------------------------------------------------------------


async def test_several_messages_over_one_connection(server: RecordingSink | ScriptedPeer) -> None:
    async with connected(server) as client:
        for number in range(3):
            result = await client.send(SENDER, [ALICE], b"Subject: %d\r\n\r\n" % number)
            assert codes(result) == {ALICE: 250}
        assert client.messages_sent == 3
    assert [message.data for message in server.messages] == [b"Subject: %d\r\n\r\n" % number for number in range(3)]
    if isinstance(server, ScriptedPeer):
        assert server.connections == 1


# --- TLS and AUTH -----------------------------------------------------------------------------


async def test_starttls(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_context, client_context = tls_contexts
    with RecordingSink(tls_context=server_context, require_starttls=True) as sink:
        async with connected(sink, tls="starttls", ssl_context=client_context) as client:
            # RFC 3207 §4.2: the extensions are those of the EHLO sent over TLS.
            assert "starttls" not in client.extensions
            result = await client.send(SENDER, [ALICE], MESSAGE)
        assert codes(result) == {ALICE: 250}
        assert sink.messages[0].data == MESSAGE


async def test_implicit_tls(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_context, client_context = tls_contexts
    with RecordingSink(tls_context=server_context, implicit_tls=True) as sink:
        async with connected(sink, tls="implicit", ssl_context=client_context) as client:
            result = await client.send(SENDER, [ALICE], MESSAGE)
        assert codes(result) == {ALICE: 250}
        assert sink.messages[0].data == MESSAGE


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_untrusted_certificate_raises(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], tls: Any) -> None:
    server_context, _ = tls_contexts
    implicit = tls == "implicit"
    with RecordingSink(tls_context=server_context, implicit_tls=implicit) as sink:
        # The default context trusts the system CAs, not our self-signed certificate.
        client = client_for(sink, tls=tls)
        with pytest.raises(DeliveryError, match=r"TLS: .*CERTIFICATE_VERIFY_FAILED"):
            await client.connect()
        assert not client.is_connected


async def test_starttls_not_offered_raises(sink: RecordingSink) -> None:
    client = client_for(sink, tls="starttls")
    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        await client.connect()
    assert not client.is_connected


async def test_starttls_refused_is_returned() -> None:
    async with ScriptedPeer(extensions=["STARTTLS"]) as peer:
        client = client_for(peer, tls="starttls")
        reply = await client.connect()
        assert reply == Reply(454, "4.7.0 TLS not available", "4.7.0")
        assert not client.is_connected


async def test_starttls_response_injection_is_refused() -> None:
    # Plaintext sent after "220" must not be read as if it came over TLS (CERT VU#555316).
    replies = {"STARTTLS": ["220 2.0.0 Ready\r\n250 injected"]}
    async with ScriptedPeer(extensions=["STARTTLS"], replies=replies) as peer:
        client = client_for(peer, tls="starttls")
        with pytest.raises(DeliveryError, match="after the STARTTLS reply"):
            await client.connect()
        assert not client.is_connected


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_success(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], mechanism: str) -> None:
    server_context, client_context = tls_contexts
    with RecordingSink(
        tls_context=server_context,
        require_starttls=True,
        auth={"relay-user": "s3cret"},
        auth_mechanisms=[mechanism],
        require_auth=True,
    ) as sink:
        async with connected(
            sink,
            tls="starttls",
            ssl_context=client_context,
            username="relay-user",
            password="s3cret",
        ) as client:
            result = await client.send(SENDER, [ALICE], MESSAGE)
        assert codes(result) == {ALICE: 250}
        assert sink.logins == [(mechanism, "relay-user")]


async def test_plain_is_preferred_to_login(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls_contexts
    with RecordingSink(implicit_tls=True, tls_context=server_context, auth={"u": "p"}) as sink:
        async with connected(sink, tls="implicit", ssl_context=client_context, username="u", password="p"):
            pass
        assert sink.logins == [("PLAIN", "u")]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_failure_raises_with_the_reply(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], mechanism: str
) -> None:
    server_context, client_context = tls_contexts
    with RecordingSink(
        tls_context=server_context,
        implicit_tls=True,
        auth={"relay-user": "s3cret"},
        auth_mechanisms=[mechanism],
    ) as sink:
        client = client_for(
            sink, tls="implicit", ssl_context=client_context, username="relay-user", password="wrong-password"
        )
        with pytest.raises(SMTPAuthenticationError) as caught:
            await client.connect()
        assert isinstance(caught.value, DeliveryError)
        assert caught.value.reply == Reply(535, "5.7.8 Authentication credentials invalid", "5.7.8")
        assert "wrong-password" not in str(caught.value)
        assert not client.is_connected


async def test_auth_plain_answers_an_empty_challenge() -> None:
    # RFC 4954 §4: a server may ignore the initial response and ask for it with "334 ".
    credentials = base64.b64encode(b"\0user\0secret").decode()
    replies = {"AUTH": ["334 "], credentials.upper(): ["235 2.7.0 Authentication successful"]}
    peer = ScriptedPeer(extensions=["PIPELINING", "AUTH PLAIN"], replies=replies)
    async with peer, connected(peer, username="user", password="secret"):
        pass
    assert peer.commands[1:3] == [f"AUTH PLAIN {credentials}", credentials]


async def test_old_style_auth_keyword_is_merged() -> None:
    async with ScriptedPeer(extensions=["AUTH PLAIN", "AUTH=LOGIN"]) as peer, connected(peer) as client:
        assert client.extensions["auth"] == "PLAIN LOGIN"


async def test_no_common_auth_mechanism_raises() -> None:
    async with ScriptedPeer(extensions=["AUTH CRAM-MD5 XOAUTH2"]) as peer:
        client = client_for(peer, username="u", password="p")
        with pytest.raises(DeliveryError, match="no AUTH mechanism we speak"):
            await client.connect()
        assert not client.is_connected


async def test_auth_not_offered_raises(sink: RecordingSink) -> None:
    client = client_for(sink, username="u", password="p")
    with pytest.raises(DeliveryError, match="does not offer AUTH"):
        await client.connect()
    assert not client.is_connected


# --- aiosmtplib as the oracle -----------------------------------------------------------------


async def send_with_aiosmtplib(sink: RecordingSink, rcpts: list[str], data: bytes) -> None:
    smtp = aiosmtplib.SMTP(hostname=sink.host, port=sink.port, start_tls=False)
    async with smtp:
        await smtp.sendmail(SENDER, rcpts, data)


@pytest.mark.parametrize(
    "data",
    [
        MESSAGE,
        b"",
        b".",
        b"..\r\n.",
        b"\r\n.\r\n\r\n.\r\n",
        b"line\n.\nsmuggled\r.\r\nmore\r\n",
        b"no final line ending",
        b"\xff\xfe binary-ish \x00 bytes\r\n",
    ],
)
async def test_same_bytes_arrive_as_with_aiosmtplib(sink: RecordingSink, data: bytes) -> None:
    await send_with_aiosmtplib(sink, [ALICE, BOB], data)
    async with connected(sink) as client:
        await client.send(SENDER, [ALICE, BOB], data)
    theirs, ours = sink.messages
    assert ours.data == theirs.data
    assert (ours.mail_from, ours.rcpt_tos) == (theirs.mail_from, theirs.rcpt_tos)


@pytest.fixture(scope="module")
def shared_sink() -> Iterator[RecordingSink]:
    with RecordingSink() as sink:
        yield sink


# Pieces that stress framing: leading dots, lone dots, every kind of line ending.
_PIECES = st.sampled_from([b".", b"..", b"\r\n", b"\n", b"\r", b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"a", b"b c", b"\xe9"])
_BODIES = st.lists(st.one_of(_PIECES, st.binary(max_size=40)), max_size=40).map(b"".join)


def expected_delivery(data: bytes) -> bytes:
    """Every CR, LF and CRLF becomes CRLF, and the message ends with one."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines[-1] == b"" and len(lines) > 1:
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_BODIES)
async def test_arbitrary_bodies_arrive_intact(shared_sink: RecordingSink, data: bytes) -> None:
    shared_sink.messages.clear()
    async with connected(shared_sink) as client:
        result = await client.send(SENDER, [ALICE], data)
    assert result.data is not None
    assert result.data.code == 250
    await send_with_aiosmtplib(shared_sink, [ALICE], data)
    ours, theirs = shared_sink.messages
    assert ours.data == expected_delivery(data)
    assert ours.data == theirs.data


# --- Framing, pure ----------------------------------------------------------------------------


@given(data=_BODIES)
def test_framing_is_unambiguous(data: bytes) -> None:
    wire = stuff_dots(normalize_line_endings(data)) + b".\r\n"
    lines = wire.split(b"\r\n")
    assert lines.pop() == b""
    assert lines.pop() == b"."
    for line in lines:
        # No bare CR or LF that a lenient server could take as a line end (SMTP smuggling), and
        # no line a server could take as the end of data.
        assert b"\r" not in line
        assert b"\n" not in line
        assert not line.startswith(b".") or line.startswith(b"..")
    unstuffed = b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)
    assert unstuffed == expected_delivery(data)


def test_tls_helper_writes_into_its_directory(tmp_path: Path) -> None:
    make_tls_contexts(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cert.pem", "key.pem"]


# --- uvloop -----------------------------------------------------------------------------------


async def _uvloop_scenarios(sink: RecordingSink, tls_sink: RecordingSink, client_context: ssl.SSLContext) -> None:
    async with connected(sink) as client:
        assert codes(await client.send(SENDER, [ALICE, BOB], MESSAGE)) == {ALICE: 250, BOB: 250}
        assert codes(await client.send(SENDER, [ALICE], BIG)) == {ALICE: 250}
    async with connected(tls_sink, tls="starttls", ssl_context=client_context) as client:
        assert codes(await client.send(SENDER, [ALICE], MESSAGE)) == {ALICE: 250}
    async with ScriptedPeer() as peer, connected(peer) as client:
        await client.send(SENDER, [ALICE, BOB], MESSAGE)
        assert group_read(peer).count(b"\r\n") == 4  # MAIL, RCPT, RCPT, DATA in one read
    async with ScriptedPeer(replies={"MAIL": [HANG]}) as peer, connected(peer, command_timeout=0.3) as client:
        with pytest.raises(DeliveryError, match="no reply to MAIL FROM"):
            await client.send(SENDER, [ALICE], MESSAGE)
    async with ScriptedPeer(drop_in_data=True) as peer, connected(peer) as client:
        with pytest.raises(DeliveryError):
            await client.send(SENDER, [ALICE], BIG)


def test_on_uvloop(sink: RecordingSink, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """Production runs uvloop, whose transports differ from asyncio's in details: a few scenarios."""
    uvloop = pytest.importorskip("uvloop")
    server_context, client_context = tls_contexts
    with RecordingSink(tls_context=server_context, require_starttls=True) as tls_sink:
        uvloop.run(_uvloop_scenarios(sink, tls_sink, client_context))
    assert [message.data for message in sink.messages] == [MESSAGE, BIG]
    assert tls_sink.messages[0].data == MESSAGE
