"""The sans-I/O SMTP session: bytes in, replies and requests out, with no sockets and no loop."""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthouse.server.smtp import replies as r
from posthouse.server.smtp.handler import SmtpReply
from posthouse.server.smtp.replies import encode_reply
from posthouse.server.smtp.session import (
    NOTHING,
    Authenticate,
    Close,
    Deliver,
    Output,
    SessionPolicy,
    SmtpSession,
    StartTLS,
)

TOKEN = "token-1"
IDENTITY = "server-1"
NETWORK = "trusted-network"
QUEUED = SmtpReply(250, "2.0.0 Ok: queued")
POLICY = SessionPolicy("mx.test", max_message_size=1000, max_recipients=3, max_errors=5)


def plain(authzid: str, user: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


AUTH_LINE = f"AUTH PLAIN {plain('', TOKEN, TOKEN)}\r\n"
NOT_UTF8 = base64.b64encode(b"\0\xff\0x").decode()


@dataclass
class Driver:
    """Runs a session as the server does, answering its requests at once like a fake handler.

    Credentials are good when user name and password are both TOKEN; every message is
    accepted with QUEUED unless `deliver_replies` says otherwise.
    """

    policy: SessionPolicy = POLICY
    tls: bool = True
    starttls: bool = False
    auth_without_tls: bool = False
    network_identity: object | None = None
    deliver_replies: list[SmtpReply | None] = field(default_factory=list)  # None: the handler raises
    wire: bytearray = field(default_factory=bytearray)
    deliveries: list[Deliver] = field(default_factory=list)
    auths: list[Authenticate] = field(default_factory=list)
    tls_starts: list[StartTLS] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self.session = SmtpSession(self.policy, tls=self.tls, starttls=self.starttls,
                                   auth_without_tls=self.auth_without_tls)  # fmt: skip
        self.run(self.session.connected(self.network_identity))

    def run(self, output: Output) -> None:
        while True:
            data, action = output
            self.wire += data
            if action is None:
                return
            if isinstance(action, Authenticate):
                self.auths.append(action)
                ok = action.username == action.password == TOKEN
                output = self.session.authenticated(IDENTITY if ok else None)
            elif isinstance(action, Deliver):
                self.deliveries.append(action)
                reply = self.deliver_replies.pop(0) if self.deliver_replies else QUEUED
                output = self.session.call_failed() if reply is None else self.session.delivered(reply)
            elif isinstance(action, StartTLS):
                self.tls_starts.append(action)
                output = self.session.tls_started()
            else:
                assert isinstance(action, Close)
                self.closed = True
                return

    def feed(self, data: bytes | str) -> list[str]:
        """Feed input; the reply lines it produced."""
        before = len(self.wire)
        self.run(self.session.receive(data.encode() if isinstance(data, str) else data))
        return self.wire[before:].decode().split("\r\n")[:-1]

    def say(self, data: bytes | str) -> str:
        """Feed input that draws exactly one (possibly multi-line) reply; that reply."""
        lines = self.feed(data)
        assert lines, "no reply"
        assert all(line[3] == "-" for line in lines[:-1]) and lines[-1][3:4] in (" ", ""), lines
        return "\n".join(lines)

    def replies(self) -> list[str]:
        """Every reply so far, multi-line ones joined, the greeting first."""
        result: list[str] = []
        pending: list[str] = []
        for line in self.wire.decode().split("\r\n")[:-1]:
            pending.append(line)
            if line[3:4] != "-":
                result.append("\n".join(pending))
                pending = []
        return result


def ready(**kwargs: object) -> Driver:
    """Greeted, EHLO'd and authenticated."""
    driver = Driver(**kwargs)  # type: ignore[arg-type]
    driver.feed("EHLO client.test\r\n")
    assert driver.say(AUTH_LINE) == str(r.S235_AUTH_SUCCESS)
    return driver


def in_transaction(**kwargs: object) -> Driver:
    driver = ready(**kwargs)
    assert driver.feed("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n") == ["250 2.1.0 Ok", "250 2.1.5 Ok"]
    return driver


def ehlo_keywords(reply: str) -> list[str]:
    return [line[4:] for line in reply.split("\n")[1:]]


# --- Greeting, EHLO, HELO ---------------------------------------------------------------------


def test_greeting() -> None:
    assert Driver().replies() == ["220 mx.test ESMTP Posthouse"]


@pytest.mark.parametrize(
    ("tls", "starttls", "auth_without_tls", "extra"),
    [
        (False, True, False, ["STARTTLS"]),
        (False, True, True, ["STARTTLS", "AUTH PLAIN LOGIN"]),
        (False, False, False, []),
        (True, False, False, ["AUTH PLAIN LOGIN"]),
        (True, True, False, ["AUTH PLAIN LOGIN"]),  # already TLS: STARTTLS is not offered
    ],
)
def test_ehlo_advertises_in_order(tls: bool, starttls: bool, auth_without_tls: bool, extra: list[str]) -> None:
    driver = Driver(tls=tls, starttls=starttls, auth_without_tls=auth_without_tls)
    reply = driver.say("EHLO client.test\r\n")
    assert reply.split("\n")[0] == "250-mx.test"
    base = ["PIPELINING", "SIZE 1000", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
    assert ehlo_keywords(reply) == base + extra


def test_helo_has_no_extensions_and_mail_parameters_need_ehlo() -> None:
    driver = Driver(network_identity=NETWORK)
    assert driver.say("HELO client.test\r\n") == "250 mx.test"
    assert driver.say("MAIL FROM:<a@example.com> SIZE=10\r\n") == str(r.S555_UNKNOWN_MAIL_PARAMETER)
    assert driver.say("MAIL FROM:<a@example.com>\r\n") == str(r.S250_SENDER_OK)
    assert driver.say("AUTH PLAIN\r\n") == str(r.S503_NEED_EHLO)


def test_input_before_the_greeting_is_answered_after_it() -> None:
    session = SmtpSession(POLICY, tls=True)
    assert session.receive(b"EHLO early\r\nNOOP\r\n") == NOTHING
    data, action = session.connected(None)
    assert action is None
    assert data.startswith(b"220 mx.test ESMTP Posthouse\r\n250-mx.test\r\n")
    assert data.endswith(b"250 2.0.0 Ok\r\n")


def test_network_lookup_failing_at_connect_is_421() -> None:
    session = SmtpSession(POLICY)
    assert session.call_failed() == Output(encode_reply(r.S421_INTERNAL_ERROR), Close())
    assert session.is_closed


@pytest.mark.parametrize(("arg", "reply"), [("", r.S501_SYNTAX_EHLO), ("  ", r.S501_SYNTAX_EHLO)])
def test_ehlo_needs_a_name(arg: str, reply: SmtpReply) -> None:
    assert Driver().say(f"EHLO{arg}\r\n") == str(reply)


# --- Simple commands and command-line errors --------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("NOOP", r.S250_OK),
        ("noop", r.S250_OK),  # RFC 5321 §2.4: verbs are case-insensitive
        ("NoOp anything", r.S250_OK),
        ("RSET", r.S250_OK),
        ("VRFY someone", r.S252_CANNOT_VRFY),
        ("HELP", r.S214_HELP),
        ("EXPN list", r.S500_UNRECOGNIZED),
        ("BDAT 10 LAST", r.S500_UNRECOGNIZED),  # CHUNKING is not offered
        ("FOO", r.S500_UNRECOGNIZED),
        ("", r.S500_EMPTY),
        ("   ", r.S500_EMPTY),
        ("DATA", r.S503_NEED_MAIL),
        ("DATA now", r.S501_SYNTAX_DATA),
        ("RCPT TO:<b@example.com>", r.S503_NEED_MAIL),
        ("STARTTLS", r.S503_TLS_ACTIVE),
        ("MAIL FROM:a@example.com", r.S501_SYNTAX_MAIL),
        ("MAIL FROM<a@example.com>", r.S501_SYNTAX_MAIL),
        ("MAIL TO:<a@example.com>", r.S501_SYNTAX_MAIL),
        ("MAIL FROM:<a@example.com", r.S501_SYNTAX_MAIL),
        ("MAIL FROM:<a@example.com>SIZE=1", r.S501_SYNTAX_MAIL),
        ("MAIL FROM:<a b@example.com>", r.S501_BAD_SENDER),
        ("MAIL FROM:<nodomain>", r.S501_BAD_SENDER),
        ("MAIL FROM:<@example.com>", r.S501_BAD_SENDER),
        ("MAIL FROM:<a@>", r.S501_BAD_SENDER),
        ("MAIL FROM:<a\x01@example.com>", r.S501_BAD_SENDER),
        (f"MAIL FROM:<{'a' * 243}@example.com>", r.S501_BAD_SENDER),  # 255 octets
        ("MAIL FROM:<a@example.com> FOO=1", r.S555_UNKNOWN_MAIL_PARAMETER),
        ("MAIL FROM:<a@example.com> SIZE=1001", r.S552_TOO_BIG),
        ("MAIL FROM:<a@example.com> SIZE=abc", r.S501_SYNTAX_MAIL),
        ("MAIL FROM:<a@example.com> SIZE=", r.S501_SYNTAX_MAIL),
        ("MAIL FROM:<a@example.com> BODY=BINARYMIME", r.S501_SYNTAX_MAIL),
        ("MAIL FROM:<a@example.com> SMTPUTF8=yes", r.S555_UNKNOWN_MAIL_PARAMETER),
        ("MAIL FROM:<dé@example.com>", r.S553_SMTPUTF8_REQUIRED),
        ("MAIL FROM:<a@example.com>", r.S250_SENDER_OK),
        ("MAIL FROM:<>", r.S250_SENDER_OK),  # the null reverse path
        ("MAIL FROM: <a@example.com>", r.S250_SENDER_OK),  # a common slip, tolerated
        ("mail from:<a@example.com> size=1000 body=8bitmime", r.S250_SENDER_OK),
        ("MAIL FROM:<a@example.com> BODY=7BIT SMTPUTF8", r.S250_SENDER_OK),
        ("MAIL FROM:<dé@exämple.com> SMTPUTF8", r.S250_SENDER_OK),
        ("MAIL FROM:<@relay.example:a@example.com>", r.S250_SENDER_OK),  # RFC 5321 §4.1.2 source route
        (f"MAIL FROM:<{'a' * 242}@example.com>", r.S250_SENDER_OK),  # 254 octets
    ],
)
def test_command_replies(line: str, reply: SmtpReply) -> None:
    assert ready().say(f"{line}\r\n".encode()) == str(reply)


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("MAIL FROM:<c@example.com>", r.S503_NESTED_MAIL),
        ("RCPT TO:c@example.com", r.S501_SYNTAX_RCPT),
        ("RCPT TO:<>", r.S501_BAD_RECIPIENT),
        ("RCPT TO:<c>", r.S501_BAD_RECIPIENT),
        ("RCPT TO:<c@example.com> NOTIFY=NEVER", r.S555_UNKNOWN_RCPT_PARAMETER),
        ("RCPT TO:<cé@example.com>", r.S553_SMTPUTF8_REQUIRED),
        ("RCPT TO:<Postmaster>", r.S250_RECIPIENT_OK),  # RFC 5321 §4.5.1
        ("RCPT TO:<@relay.example,@other.example:c@example.com>", r.S250_RECIPIENT_OK),
        ("RCPT TO: <c@example.com>", r.S250_RECIPIENT_OK),
        ("AUTH PLAIN", r.S503_ALREADY_AUTHENTICATED),
        ("STARTTLS", r.S503_TLS_ACTIVE),
    ],
)
def test_replies_inside_a_transaction(line: str, reply: SmtpReply) -> None:
    assert in_transaction().say(f"{line}\r\n".encode()) == str(reply)


def test_auth_inside_a_transaction_is_refused() -> None:
    driver = Driver(network_identity=NETWORK)
    driver.feed("EHLO client.test\r\nMAIL FROM:<a@example.com>\r\n")
    assert driver.say(AUTH_LINE) == str(r.S503_AUTH_IN_TRANSACTION)


def test_mail_before_helo() -> None:
    assert Driver(network_identity=NETWORK).say("MAIL FROM:<a@example.com>\r\n") == str(r.S503_NEED_HELO)


def test_mail_without_identity_needs_auth() -> None:
    driver = Driver()
    driver.feed("EHLO client.test\r\n")
    assert driver.say("MAIL FROM:<a@example.com>\r\n") == str(r.S530_AUTH_REQUIRED)


def test_quit_closes_and_ignores_what_follows() -> None:
    driver = Driver()
    assert driver.feed("QUIT\r\nNOOP\r\n") == [str(r.S221_BYE)]
    assert driver.closed
    assert driver.session.receive(b"NOOP\r\n") == NOTHING


@pytest.mark.parametrize(
    ("data", "replies"),
    [
        # RFC 5321 §2.3.8: a bare LF does not end a command; the line it ends is dropped whole.
        (b"MAIL FROM:<a@example.com>\nRCPT TO:<b@example.com>\r\n", [r.S500_BARE_LF, r.S503_NEED_MAIL]),
        (b"NOOP\n", [r.S500_BARE_LF]),
        (b"\n", [r.S500_BARE_LF]),
        (b"NOOP\rMAIL FROM:<a@example.com>\r\n", [r.S500_BARE_CR]),
        (b"NOOP\r\r\n", [r.S500_BARE_CR]),
        (b"NOOP " + b"x" * 506 + b"\r\n", [r.S500_LINE_TOO_LONG]),  # 513 octets with CRLF
        (b"NOOP " + b"x" * 505 + b"\r\n", [r.S250_OK]),  # 512
    ],
)
def test_command_line_framing(data: bytes, replies: list[SmtpReply]) -> None:
    assert ready().feed(data) == [str(reply) for reply in replies]


def test_an_endless_line_is_not_buffered_and_is_answered_at_its_end() -> None:
    driver = ready()
    for _ in range(50):
        assert driver.feed(b"x" * 4096) == []
        assert driver.session.buffered <= 12288 + 4096
    assert driver.feed(b"yyy\r\nNOOP\r\n") == [str(r.S500_LINE_TOO_LONG), str(r.S250_OK)]


def test_too_many_errors_closes_with_421() -> None:
    driver = Driver()  # max_errors=5
    assert driver.feed("FOO\r\n" * 5) == [str(r.S500_UNRECOGNIZED)] * 5
    assert not driver.closed
    assert driver.feed("FOO\r\nNOOP\r\n") == [str(r.S421_TOO_MANY_ERRORS)]
    assert driver.closed


# --- AUTH ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "replies", "mechanism"),
    [
        ([AUTH_LINE], [r.S235_AUTH_SUCCESS], "PLAIN"),
        (["AUTH PLAIN\r\n", f"{plain('', TOKEN, TOKEN)}\r\n"], [r.S334_EMPTY, r.S235_AUTH_SUCCESS], "PLAIN"),
        ([f"auth plain {plain(TOKEN, TOKEN, TOKEN)}\r\n"], [r.S235_AUTH_SUCCESS], "PLAIN"),  # authzid = authcid
        (["AUTH LOGIN\r\n", f"{b64(TOKEN)}\r\n", f"{b64(TOKEN)}\r\n"],
         [r.S334_USERNAME, r.S334_PASSWORD, r.S235_AUTH_SUCCESS], "LOGIN"),
        ([f"AUTH LOGIN {b64(TOKEN)}\r\n", f"{b64(TOKEN)}\r\n"], [r.S334_PASSWORD, r.S235_AUTH_SUCCESS], "LOGIN"),
        ([f"AUTH PLAIN {plain('', TOKEN, 'wrong')}\r\n"], [r.S535_AUTH_INVALID], "PLAIN"),
        (["AUTH LOGIN\r\n", f"{b64(TOKEN)}\r\n", f"{b64('wrong')}\r\n"],
         [r.S334_USERNAME, r.S334_PASSWORD, r.S535_AUTH_INVALID], "LOGIN"),
    ],
)  # fmt: skip
def test_auth_exchanges(lines: list[str], replies: list[SmtpReply], mechanism: str) -> None:
    driver = Driver()
    driver.feed("EHLO client.test\r\n")
    assert [driver.say(line) for line in lines] == [str(reply) for reply in replies]
    assert [auth.mechanism for auth in driver.auths] == [mechanism]


@pytest.mark.parametrize(
    ("lines", "replies"),
    [
        (["AUTH PLAIN\r\n", "*\r\n"], [r.S334_EMPTY, r.S501_AUTH_CANCELLED]),
        (["AUTH LOGIN\r\n", "*\r\n"], [r.S334_USERNAME, r.S501_AUTH_CANCELLED]),
        (["AUTH LOGIN\r\n", f"{b64(TOKEN)}\r\n", "*\r\n"], [r.S334_USERNAME, r.S334_PASSWORD, r.S501_AUTH_CANCELLED]),
        (["AUTH PLAIN !!!notbase64\r\n"], [r.S501_BAD_BASE64]),
        (["AUTH PLAIN\r\n", "%%%\r\n"], [r.S334_EMPTY, r.S501_BAD_BASE64]),
        (["AUTH LOGIN\r\n", "%%%\r\n"], [r.S334_USERNAME, r.S501_BAD_BASE64]),
        ([f"AUTH PLAIN {b64('no separators')}\r\n"], [r.S501_BAD_BASE64]),
        ([f"AUTH PLAIN {NOT_UTF8}\r\n"], [r.S501_BAD_BASE64]),
        (["AUTH PLAIN =\r\n"], [r.S501_BAD_BASE64]),  # an empty response is not a PLAIN message
        ([f"AUTH PLAIN {plain('someone-else', TOKEN, TOKEN)}\r\n"], [r.S535_AUTH_INVALID]),  # RFC 4616 §2
        (["AUTH CRAM-MD5\r\n"], [r.S504_UNKNOWN_MECHANISM]),
        (["AUTH\r\n"], [r.S501_SYNTAX_AUTH]),
    ],
)
def test_auth_refusals_never_reach_the_handler(lines: list[str], replies: list[SmtpReply]) -> None:
    driver = Driver()
    driver.feed("EHLO client.test\r\n")
    assert [driver.say(line) for line in lines] == [str(reply) for reply in replies]
    assert driver.auths == []
    assert driver.say("NOOP\r\n") == str(r.S250_OK)  # the exchange is over: back to commands


def test_auth_before_tls_needs_encryption() -> None:
    driver = Driver(tls=False, starttls=True)
    assert "AUTH PLAIN LOGIN" not in ehlo_keywords(driver.say("EHLO client.test\r\n"))
    assert driver.say(AUTH_LINE) == str(r.S538_ENCRYPTION_REQUIRED)
    assert driver.auths == []
    assert driver.say("STARTTLS\r\n") == str(r.S220_READY_TLS)
    assert "AUTH PLAIN LOGIN" in ehlo_keywords(driver.say("EHLO client.test\r\n"))
    assert driver.say(AUTH_LINE) == str(r.S235_AUTH_SUCCESS)


def test_auth_lines_may_be_long_other_lines_not() -> None:
    password = "p" * 3000
    driver = Driver()
    driver.feed("EHLO client.test\r\n")
    assert driver.say(f"AUTH PLAIN {plain('', 'user', password)}\r\n") == str(r.S535_AUTH_INVALID)
    assert driver.auths[0].password == password
    assert "p" * 20 not in repr(driver.auths[0])  # never in logs or tracebacks


def test_handler_failing_during_auth_is_454() -> None:
    session = SmtpSession(POLICY, tls=True)
    session.connected(None)
    session.receive(b"EHLO client.test\r\n")
    _, action = session.receive(AUTH_LINE.encode())
    assert isinstance(action, Authenticate)
    assert session.call_failed() == Output(encode_reply(r.S454_AUTH_TEMPORARY_FAILURE), None)


# --- Transactions and DATA -----------------------------------------------------------------------------


def test_a_message_is_delivered_with_its_envelope_and_the_transaction_resets() -> None:
    driver = in_transaction()
    assert driver.feed("RCPT TO:<c@example.com>\r\nDATA\r\n") == ["250 2.1.5 Ok", str(r.S354_DATA)]
    assert driver.session.in_data
    assert driver.feed("Subject: hi\r\n\r\nhello\r\n.\r\n") == [str(QUEUED)]
    (message,) = driver.deliveries
    assert message == Deliver(IDENTITY, "a@example.com", ("b@example.com", "c@example.com"),
                              b"Subject: hi\r\n\r\nhello\r\n")  # fmt: skip
    assert driver.say("RCPT TO:<b@example.com>\r\n") == str(r.S503_NEED_MAIL)  # RFC 5321 §4.1.1.4
    assert driver.say("MAIL FROM:<a@example.com>\r\n") == str(r.S250_SENDER_OK)  # still authenticated


@pytest.mark.parametrize(
    ("wire", "data"),
    [
        (b".\r\n", b""),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"..a\r\n..\r\n...\r\n.\r\n", b".a\r\n.\r\n..\r\n"),
        (b"a\r\n..\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
        (b".a\r\n.\r\n", b"a\r\n"),  # an unstuffed leading dot from a sloppy client: removed (§4.5.2)
        (b"\r\n\r\n.\r\n", b"\r\n\r\n"),
        (b"caf\xc3\xa9 \xff\r\n.\r\n", b"caf\xc3\xa9 \xff\r\n"),
    ],
)
def test_dot_unstuffing(wire: bytes, data: bytes) -> None:
    driver = in_transaction()
    driver.feed("DATA\r\n")
    assert driver.feed(wire) == [str(QUEUED)]
    assert driver.deliveries[0].data == data


def test_pipelined_transactions_are_answered_in_order() -> None:
    driver = ready()
    group = (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\none\r\n.\r\n"
        b"MAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.com>\r\nRCPT TO:bad\r\nDATA\r\ntwo\r\n.\r\n"
        b"RSET\r\nNOOP\r\nQUIT\r\n"
    )
    assert driver.feed(group) == [
        "250 2.1.0 Ok", "250 2.1.5 Ok", str(r.S354_DATA), str(QUEUED),
        "250 2.1.0 Ok", "250 2.1.5 Ok", str(r.S501_SYNTAX_RCPT), str(r.S354_DATA), str(QUEUED),
        "250 2.0.0 Ok", "250 2.0.0 Ok", "221 2.0.0 Bye",
    ]  # fmt: skip
    assert [(m.mail_from, m.recipients, m.data) for m in driver.deliveries] == [
        ("a@example.com", ("b@example.com",), b"one\r\n"),
        ("c@example.com", ("d@example.com",), b"two\r\n"),
    ]


def test_input_is_held_while_a_request_is_out() -> None:
    session = SmtpSession(POLICY, tls=True)
    session.connected(None)
    session.receive(b"EHLO client.test\r\n")
    session.receive(AUTH_LINE.encode())
    session.authenticated(IDENTITY)
    _, action = session.receive(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n"
                                b"NOOP\r\n")
    assert isinstance(action, Deliver)
    assert session.receive(b"NOOP\r\n") == NOTHING
    assert session.backlog == len(b"NOOP\r\nNOOP\r\n")
    assert session.delivered(QUEUED) == Output(encode_reply(QUEUED) + encode_reply(r.S250_OK) * 2, None)


def test_data_after_failed_recipients_is_read_as_commands() -> None:
    # RFC 2920 §3.1: DATA refused because no RCPT succeeded; the client must not send data.
    driver = ready()
    replies = driver.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<>\r\nDATA\r\nNOOP\r\n")
    assert replies == ["250 2.1.0 Ok", str(r.S501_BAD_RECIPIENT), str(r.S503_NEED_RCPT), "250 2.0.0 Ok"]


def test_too_many_recipients() -> None:
    driver = ready()  # max_recipients=3
    lines = "".join(f"RCPT TO:<r{i}@example.com>\r\n" for i in range(5))
    replies = driver.feed(f"MAIL FROM:<a@example.com>\r\n{lines}DATA\r\nx\r\n.\r\n")
    assert replies == ["250 2.1.0 Ok"] + ["250 2.1.5 Ok"] * 3 + [str(r.S452_TOO_MANY_RECIPIENTS)] * 2 + [
        str(r.S354_DATA), str(QUEUED)]  # fmt: skip
    assert driver.deliveries[0].recipients == ("r0@example.com", "r1@example.com", "r2@example.com")


def test_message_at_the_size_limit_counts_without_dot_stuffing() -> None:
    body = b"." + b"x" * 97 + b"\r\n"  # 100 octets, 101 on the wire
    data = body * 10  # exactly the 1000-octet limit
    driver = in_transaction()
    driver.feed("DATA\r\n")
    wire = (b"." + body) * 10 + b".\r\n"
    assert driver.feed(wire) == [str(QUEUED)]
    assert driver.deliveries[0].data == data


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
def test_oversized_message_is_read_to_its_end_then_refused(chunk: int) -> None:
    driver = in_transaction()
    driver.feed("DATA\r\n")
    wire = b"y" * 60 + b"\r\n"
    stream = wire * 200 + b".\r\nNOOP\r\n"
    replies: list[str] = []
    peak = 0
    for start in range(0, len(stream), chunk):
        replies += driver.feed(stream[start : start + chunk])
        peak = max(peak, driver.session.buffered)
    assert replies == [str(r.S552_TOO_BIG), str(r.S250_OK)]
    assert driver.deliveries == []
    assert peak <= 1000 + 2 + chunk + 4  # never much beyond the limit
    assert driver.say("RCPT TO:<b@example.com>\r\n") == str(r.S503_NEED_MAIL)


def test_handler_replies_are_sent_as_given() -> None:
    refused = SmtpReply(550, "5.7.1 Sender not allowed")
    multi = SmtpReply(250, "2.0.0 Ok\nqueued as 1\r\nand 2")
    driver = in_transaction(deliver_replies=[refused, multi])
    assert driver.feed("DATA\r\nx\r\n.\r\n") == [str(r.S354_DATA), "550 5.7.1 Sender not allowed"]
    driver.feed("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    assert driver.feed("DATA\r\nx\r\n.\r\n") == [str(r.S354_DATA), "250-2.0.0 Ok", "250-queued as 1", "250 and 2"]


def test_handler_raising_is_451_and_the_transaction_resets() -> None:
    driver = in_transaction(deliver_replies=[None])
    assert driver.feed("DATA\r\nx\r\n.\r\nRCPT TO:<b@example.com>\r\n") == [
        str(r.S354_DATA), str(r.S451_INTERNAL_ERROR), str(r.S503_NEED_MAIL)]  # fmt: skip


def test_handler_421_closes() -> None:
    driver = in_transaction(deliver_replies=[SmtpReply(421, "4.3.2 Going away")])
    assert driver.feed("DATA\r\nx\r\n.\r\nNOOP\r\n") == [str(r.S354_DATA), "421 4.3.2 Going away"]
    assert driver.closed


def test_trusted_network_submits_without_auth() -> None:
    driver = Driver(network_identity=NETWORK)
    driver.feed("EHLO client.test\r\n")
    driver.feed("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n")
    assert driver.deliveries[0].identity == NETWORK


def test_auth_identity_wins_over_the_network_one() -> None:
    driver = ready(network_identity=NETWORK)
    driver.feed("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n")
    assert driver.deliveries[0].identity == IDENTITY


# --- STARTTLS ------------------------------------------------------------------------------------------


def test_starttls_forgets_what_came_before() -> None:
    driver = Driver(tls=False, starttls=True, auth_without_tls=True, network_identity=NETWORK)
    driver.feed("EHLO client.test\r\n")
    assert driver.say(AUTH_LINE) == str(r.S235_AUTH_SUCCESS)
    assert driver.say("STARTTLS\r\n") == str(r.S220_READY_TLS)
    assert driver.tls_starts == [StartTLS(0)]
    assert driver.session.is_tls
    # RFC 3207 §4.2: EHLO again; AUTH is forgotten, the network identity is not.
    assert driver.say("MAIL FROM:<a@example.com>\r\n") == str(r.S503_NEED_HELO)
    assert "STARTTLS" not in ehlo_keywords(driver.say("EHLO client.test\r\n"))
    assert driver.say("STARTTLS\r\n") == str(r.S503_TLS_ACTIVE)
    driver.feed("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n")
    assert driver.deliveries[0].identity == NETWORK


def test_plaintext_after_starttls_is_discarded() -> None:
    driver = Driver(tls=False, starttls=True)
    driver.feed("EHLO client.test\r\n")
    injected = b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\n"
    assert driver.feed(b"STARTTLS\r\n" + injected) == [str(r.S220_READY_TLS)]
    assert driver.tls_starts == [StartTLS(len(injected))]
    driver.feed("EHLO client.test\r\n")
    assert driver.say("RCPT TO:<victim@example.com>\r\n") == str(r.S503_NEED_MAIL)


def test_bytes_between_starttls_and_the_handshake_are_dropped() -> None:
    session = SmtpSession(POLICY, starttls=True)
    session.connected(None)
    session.receive(b"EHLO client.test\r\n")
    _, action = session.receive(b"STARTTLS\r\n")
    assert isinstance(action, StartTLS)
    assert session.receive(b"NOOP\r\n") == NOTHING
    assert session.tls_started() == NOTHING


@pytest.mark.parametrize(
    ("tls", "starttls", "setup", "reply"),
    [
        (False, True, "", r.S501_SYNTAX_STARTTLS),
        (False, False, "", r.S502_NOT_IMPLEMENTED),
        (True, False, "", r.S503_TLS_ACTIVE),
    ],
)
def test_starttls_refusals(tls: bool, starttls: bool, setup: str, reply: SmtpReply) -> None:
    driver = Driver(tls=tls, starttls=starttls)
    driver.feed("EHLO client.test\r\n")
    line = "STARTTLS now\r\n" if reply is r.S501_SYNTAX_STARTTLS else "STARTTLS\r\n"
    assert driver.say(line) == str(reply)


def test_starttls_inside_a_transaction() -> None:
    driver = Driver(tls=False, starttls=True, network_identity=NETWORK)
    driver.feed("EHLO client.test\r\nMAIL FROM:<a@example.com>\r\n")
    assert driver.say("STARTTLS\r\n") == str(r.S503_STARTTLS_IN_TRANSACTION)


# --- Timeouts and shutdown -------------------------------------------------------------------------------


def test_timeout() -> None:
    session = SmtpSession(POLICY)
    session.connected(None)
    assert session.timed_out() == Output(b"421 4.4.2 mx.test Error: timeout exceeded\r\n", Close())
    assert session.timed_out() == NOTHING


def test_shutdown_when_idle() -> None:
    session = SmtpSession(POLICY)
    session.connected(None)
    assert session.shut_down() == Output(encode_reply(r.S421_SHUTTING_DOWN), Close())


def test_shutdown_lets_the_request_in_flight_answer_first() -> None:
    driver = in_transaction()
    session = driver.session
    _, action = session.receive(b"DATA\r\nx\r\n.\r\nNOOP\r\n")
    assert isinstance(action, Deliver)
    assert session.shut_down() == NOTHING
    assert session.delivered(QUEUED) == Output(encode_reply(QUEUED) + encode_reply(r.S421_SHUTTING_DOWN), Close())


def test_shutdown_before_the_greeting() -> None:
    session = SmtpSession(POLICY)
    assert session.shut_down() == NOTHING
    assert session.connected(None) == Output(encode_reply(r.S421_SHUTTING_DOWN), Close())


def test_policy_checks_its_values() -> None:
    with pytest.raises(ValueError, match="hostname"):
        SessionPolicy("bad host")
    with pytest.raises(ValueError, match="max_recipients"):
        SessionPolicy("mx.test", max_recipients=0)


def test_session_requests_hide_secrets_from_repr() -> None:
    assert "secret" not in repr(Authenticate("PLAIN", "user", "secret"))
    assert "body" not in repr(Deliver(None, "a@b", ("c@d",), b"body"))


# --- Properties ------------------------------------------------------------------------------------------

_LINE = st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b""))
_DOTTY_LINE = st.one_of(_LINE, st.sampled_from([b".", b"..", b"...", b". ", b".x"]), _LINE.map(lambda b: b"." + b))
# A message as a client hands it over: lines without CR, LF or NUL, each ending in CRLF.
_BODIES = st.lists(_DOTTY_LINE, max_size=20).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


def stuff(body: bytes) -> bytes:
    """The client's side of RFC 5321 §4.5.2, line by line: the oracle for the session's bytes methods."""
    lines = body.split(b"\r\n")[:-1] if body else []
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def pipelined_session(bodies: list[bytes]) -> bytes:
    script = [b"EHLO client.test\r\n", AUTH_LINE.encode()]
    for i, body in enumerate(bodies):
        script.append(f"MAIL FROM:<s{i}@example.com> SIZE={len(body)}\r\nRCPT TO:<a@example.com>\r\n".encode())
        script.append(b"RCPT TO:<b@example.com>\r\nDATA\r\n" + stuff(body))
    script.append(b"VRFY x\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    return b"".join(script)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(_BODIES, min_size=1, max_size=4), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_any_split_of_a_pipelined_session_gives_the_same_replies(bodies: list[bytes], cuts: list[int]) -> None:
    stream = pipelined_session(bodies)
    whole = Driver(tls=True)
    whole.feed(stream)
    pieces = Driver(tls=True)
    for piece in split(stream, cuts):
        pieces.feed(piece)
    assert pieces.wire == whole.wire
    assert pieces.deliveries == whole.deliveries
    assert [m.data for m in whole.deliveries] == bodies
    assert whole.closed and pieces.closed
    assert whole.replies()[-4:] == [str(r.S252_CANNOT_VRFY), "250 2.0.0 Ok", "250 2.0.0 Ok", "221 2.0.0 Bye"]


@settings(max_examples=300, deadline=None)
@given(body=_BODIES, chunk=st.integers(min_value=1, max_value=64))
def test_bodies_round_trip_byte_exact_through_dot_stuffing(body: bytes, chunk: int) -> None:
    driver = in_transaction(policy=SessionPolicy("mx.test", max_message_size=10_000))
    driver.feed("DATA\r\n")
    wire = stuff(body)
    for start in range(0, len(wire), chunk):
        driver.feed(wire[start : start + chunk])
    assert [m.data for m in driver.deliveries] == [body]
