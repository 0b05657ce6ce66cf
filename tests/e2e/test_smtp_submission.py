"""SMTP submission to the real server process: the smtplib path, swaks, aiosmtplib, many connections,
Postmark's X-PM headers, and refusals that store nothing."""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
import subprocess
from email import policy
from email.message import EmailMessage
from email.mime.text import MIMEText
from email.parser import BytesParser

import aiosmtplib
import pytest

from support import ServerProcess, wait_for

FROM_ADDR = "app@example.com"


def trusting(server: ServerProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.tls_certificate))


def listed(server: ServerProcess, **params: object) -> dict:  # type: ignore[type-arg]
    with server.client() as client:
        response = client.get("/messages/outbound", params={"count": 50, "offset": 0, **params})
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]


def headers_of(data: bytes):  # type: ignore[no-untyped-def]
    return BytesParser(policy=policy.default).parsebytes(data)


def test_the_classic_smtplib_program_delivers_verbatim(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    """The most common way Python sends mail, exactly as users write it (issue 11): only the four
    variables point at Posthouse. The message has no From (the sender is only the envelope's MAIL FROM),
    no Date, no Message-ID, and `starttls()` gets no context (smtplib then does not verify the certificate)."""
    SMTP_SERVER = "127.0.0.1"
    SMTP_PORT = relay_server.smtp_port
    SMTP_USER = relay_server.server_token
    SMTP_PASS = relay_server.server_token

    test_message = MIMEText("Hello world! This is an SMTP service test!", "plain")
    test_message["Subject"] = "SMTP Test"
    test_message["To"] = "recipient@example.com"
    with smtplib.SMTP(SMTP_SERVER, SMTP_PORT) as server:
        server.starttls()
        server.login(SMTP_USER, SMTP_PASS)
        server.sendmail("no-reply@mailservice.com", "recipient@example.com", test_message.as_string())

    wait_for(lambda: sink.messages, timeout=10)
    [received] = sink.messages
    # The envelope sender is the VERP return path naming this message (bounces come back to it).
    assert re.fullmatch(r"pm_bounces\+[0-9a-f]{1,16}[a-z2-7]{13}@localhost", received.mail_from), received.mail_from
    assert received.rcpt_tos == ["recipient@example.com"]
    parsed = headers_of(received.data)
    # The From came from the envelope sender; Date and Message-ID were added; nothing else was invented.
    assert parsed.get_all("From") == ["no-reply@mailservice.com"]
    assert parsed["To"] == "recipient@example.com"
    assert parsed["Subject"] == "SMTP Test"
    assert parsed["Date"] is not None and parsed["Date"].datetime is not None
    assert re.fullmatch(r"<[0-9a-f-]{36}@[^>]+>", parsed["Message-ID"]), parsed["Message-ID"]
    assert parsed.get_content().rstrip("\r\n") == "Hello world! This is an SMTP service test!"
    [message] = listed(relay_server)["Messages"]
    assert message["MessageID"] == parsed["X-PM-Message-Id"]
    assert message["From"] == "no-reply@mailservice.com"
    assert message["Subject"] == "SMTP Test"
    assert [to["Email"] for to in message["To"]] == ["recipient@example.com"]

    def delivered() -> bool:
        with relay_server.client() as client:
            found = client.get(f"/messages/outbound/{message['MessageID']}/details").json()
        return any(e["Type"] == "Delivered" for e in found["MessageEvents"])

    wait_for(delivered)


def test_x_pm_headers_land_in_the_record_and_never_reach_the_recipient(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    msg = EmailMessage()
    msg["From"] = "Shop <shop@example.com>"
    msg["To"] = "ann@example.com"
    msg["Subject"] = "Your order"
    msg["X-PM-Message-Stream"] = "broadcast"
    msg["X-PM-Tag"] = "orders"
    msg["X-PM-Metadata-order-id"] = "A-1001"
    msg["X-PM-TrackOpens"] = "false"
    msg.set_content("Shipped.")
    with smtplib.SMTP("127.0.0.1", relay_server.smtp_port) as smtp:
        smtp.starttls(context=trusting(relay_server))
        smtp.login(relay_server.server_token, relay_server.server_token)
        refused = smtp.send_message(msg, to_addrs=["ann@example.com", "hidden@example.com"])
        assert refused == {}
    # One transaction per recipient (each with its own VERP return path).
    wait_for(lambda: len(sink.messages) == 2, timeout=10)
    received = sink.messages[0]
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == ["ann@example.com", "hidden@example.com"]
    names = [line.split(b":", 1)[0].lower() for line in received.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")]
    assert b"x-pm-tag" not in names and b"x-pm-message-stream" not in names
    assert b"x-pm-metadata-order-id" not in names and b"x-pm-trackopens" not in names
    assert b"x-pm-message-id" in names
    record = listed(relay_server, messagestream="broadcast")["Messages"]
    assert len(record) == 1
    assert record[0]["Tag"] == "orders"
    assert record[0]["Metadata"] == {"order-id": "A-1001"}
    assert record[0]["TrackOpens"] is False
    assert [b["Email"] for b in record[0]["Bcc"]] == ["hidden@example.com"]
    assert listed(relay_server)["TotalCount"] == 0  # nothing in the default stream


def test_swaks_with_starttls_and_auth(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    token = relay_server.server_token
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{relay_server.smtp_port}", "--tls", "--tls-verify",
         "--tls-ca-path", str(relay_server.tls_certificate), "--auth", "LOGIN", "--auth-user", token,
         "--auth-password", token, "--from", FROM_ADDR, "--to", "swaks@example.com",
         "--header", "Subject: from swaks", "--body", "swaks body"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    wait_for(lambda: sink.messages, timeout=10)
    assert sink.messages[0].rcpt_tos == ["swaks@example.com"]


async def test_aiosmtplib_several_messages_in_one_session(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay_server.smtp_port, start_tls=True,
                             tls_context=trusting(relay_server))
    async with client:
        await client.login(relay_server.server_token, relay_server.server_token)
        assert "pipelining" in client.esmtp_extensions
        for i in range(5):
            msg = EmailMessage()
            msg["From"] = FROM_ADDR
            msg["To"] = f"a{i}@example.com"
            msg["Subject"] = f"aio {i}"
            msg.set_content("x")
            errors, reply = await client.send_message(msg)
            assert errors == {} and reply.startswith("2.0.0 Ok: queued as")
    await asyncio.to_thread(wait_for, lambda: len(sink.messages) == 5, 15)
    assert listed(relay_server)["TotalCount"] == 5


async def test_fifty_concurrent_connections(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    context = trusting(relay_server)

    async def session(n: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay_server.smtp_port, start_tls=True,
                                 tls_context=context, timeout=60)
        async with client:
            await client.login(relay_server.server_token, relay_server.server_token)
            for i in range(4):
                await client.sendmail(FROM_ADDR, [f"c{n}-{i}@example.com"],
                                      f"From: {FROM_ADDR}\r\nTo: c{n}-{i}@example.com\r\nSubject: {n}/{i}\r\n\r\nx\r\n")

    await asyncio.gather(*(session(n) for n in range(50)))
    await asyncio.to_thread(wait_for, lambda: len(sink.messages) >= 200, 60)
    received = sorted(m.rcpt_tos[0] for m in sink.messages)
    assert received == sorted(f"c{n}-{i}@example.com" for n in range(50) for i in range(4))


def smtp_session(server: ServerProcess) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10)
    smtp.starttls(context=trusting(server))
    return smtp


@pytest.mark.parametrize("case", ["wrong-password", "no-auth", "oversized", "too-many-recipients", "bad-stream",
                                  "null-sender-without-from", "from-without-address"])
def test_refusals_store_nothing(relay_server, sink, case) -> None:  # type: ignore[no-untyped-def]
    token = relay_server.server_token
    body = f"From: {FROM_ADDR}\r\nTo: r@example.com\r\nSubject: refused\r\n\r\nx\r\n"
    with smtp_session(relay_server) as smtp:
        if case == "wrong-password":
            with pytest.raises(smtplib.SMTPAuthenticationError) as auth:
                smtp.login(token, "not-the-token")
            assert auth.value.smtp_code == 535 and auth.value.smtp_error.startswith(b"5.7.8")
        elif case == "no-auth":
            smtp.ehlo()
            # MAIL is open to anyone (a bounce to the return-path domain needs no AUTH); RCPT to any
            # other domain is refused until the client authenticates.
            assert smtp.mail(FROM_ADDR)[0] == 250
            code, text = smtp.rcpt("r@example.com")
            assert (code, text[:5]) == (530, b"5.7.0")
        else:
            smtp.login(token, token)
            if case == "oversized":
                with pytest.raises(smtplib.SMTPSenderRefused) as big:
                    smtp.sendmail(FROM_ADDR, ["r@example.com"], body + "y" * (10 * 1024 * 1024 + 10))
                assert big.value.smtp_code == 552 and big.value.smtp_error.startswith(b"5.3.4")
            elif case == "too-many-recipients":
                assert smtp.mail(FROM_ADDR)[0] == 250
                codes = [smtp.rcpt(f"r{i}@example.com") for i in range(51)]
                assert {c for c, _ in codes[:50]} == {250}
                assert codes[50][0] == 452 and codes[50][1].startswith(b"4.5.3")
                smtp.rset()
            elif case == "bad-stream":
                with pytest.raises(smtplib.SMTPDataError) as data:
                    smtp.sendmail(FROM_ADDR, ["r@example.com"], "X-PM-Message-Stream: nosuch\r\n" + body)
                assert data.value.smtp_code == 554
                assert b"does not exist" in data.value.smtp_error and b"1235" in data.value.smtp_error
            else:
                # No From header and a null reverse path: nobody to name as the author. A From header
                # with no address in it is refused rather than passed on or replaced.
                sender, headers = ("", "") if case == "null-sender-without-from" else (FROM_ADDR, "From: Jane Doe\r\n")
                with pytest.raises(smtplib.SMTPDataError) as data:
                    smtp.sendmail(sender, ["r@example.com"], headers + "To: r@example.com\r\nSubject: s\r\n\r\nx\r\n")
                assert data.value.smtp_code == 554 and data.value.smtp_error.startswith(b"5.6.0 ")
                expected = b"null (MAIL FROM:<>)" if case == "null-sender-without-from" else b"names no valid address"
                assert expected in data.value.smtp_error and b"(ErrorCode 300)" in data.value.smtp_error
    assert listed(relay_server)["TotalCount"] == 0
    assert sink.messages == []


def test_implicit_tls_listener_beside_a_starttls_one(tmp_path, database_url, sink) -> None:  # type: ignore[no-untyped-def]
    from support import free_port

    implicit_port = free_port()
    server = ServerProcess(tmp_path / "data", database_url, delivery="relay",
                           relay_url=f"smtp://127.0.0.1:{sink.port}")
    server.extra_env["POSTHOUSE_SMTP"] = f"127.0.0.1:{server.smtp_port},smtps://127.0.0.1:{implicit_port}"
    with server:
        with smtplib.SMTP_SSL("127.0.0.1", implicit_port, context=trusting(server)) as smtp:
            smtp.login(server.server_token, server.server_token)
            smtp.sendmail(FROM_ADDR, ["implicit@example.com"],
                          f"From: {FROM_ADDR}\r\nTo: implicit@example.com\r\nSubject: 465\r\n\r\nx\r\n")
        with smtp_session(server) as smtp:
            smtp.login(server.server_token, server.server_token)
            smtp.sendmail(FROM_ADDR, ["starttls@example.com"],
                          f"From: {FROM_ADDR}\r\nTo: starttls@example.com\r\nSubject: 587\r\n\r\nx\r\n")
        wait_for(lambda: len(sink.messages) == 2, timeout=10)
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["implicit@example.com", "starttls@example.com"]
