"""The same `Email` over SMTP: to Posthouse's own listener (STARTTLS, implicit TLS, plain on loopback) and to
an aiosmtpd sink that records what arrived (X-PM headers, MIME structure, envelope, refusals)."""

from __future__ import annotations

import asyncio
import base64
import textwrap
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

import posthouse
from integration.smtp_peers import RecordingSink, make_tls_contexts
from sdk.sdk_support import Tenant
from support import free_port

FULL = posthouse.Email(
    sender="Shop <shop@example.com>",
    to="ann@example.com",
    cc="Bob <bob@example.com>",
    bcc="hidden@example.com",
    reply_to="help@example.com",
    subject="Grüße",
    text_body="Hallo ä",
    html_body='<p>Hi <img src="cid:logo"></p>',
    tag="welcome",
    metadata={"user_id": "12345", "plan": "pro"},
    message_stream="outbound",
    track_opens=True,
    track_links="HtmlOnly",
    headers=[posthouse.Header(name="X-Custom", value="yes")],
    attachments=[
        posthouse.encode_attachment("invoice.pdf", b"%PDF-1.4 fake"),
        posthouse.encode_attachment("logo.png", b"\x89PNG fake", content_id="logo"),
    ],
)


def parse(data: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(data)  # type: ignore[return-value]


def structure(part: EmailMessage, depth: int = 0) -> list[str]:
    lines = ["  " * depth + part.get_content_type()]
    if part.is_multipart():
        for sub in part.iter_parts():
            lines += structure(sub, depth + 1)  # type: ignore[arg-type]
    return lines


def test_x_pm_headers_mime_and_envelope_at_a_recording_sink() -> None:
    with RecordingSink() as sink:
        response = posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}").send(FULL)
    [received] = sink.messages
    assert received.mail_from == "shop@example.com"
    assert received.rcpt_tos == ["ann@example.com", "bob@example.com", "hidden@example.com"]
    message = parse(received.data)
    assert message["X-PM-Tag"] == "welcome"
    assert message["X-PM-Metadata-user_id"] == "12345" and message["X-PM-Metadata-plan"] == "pro"
    assert message["X-PM-Message-Stream"] == "outbound"
    assert message["X-PM-TrackOpens"] == "true" and message["X-PM-TrackLinks"] == "HtmlOnly"
    assert message["X-Custom"] == "yes"
    assert message["Subject"] == "Grüße" and message["Reply-To"] == "help@example.com"
    assert message["Cc"] == "Bob <bob@example.com>"
    assert message["Bcc"] is None and b"hidden@example.com" not in received.data  # the envelope only
    assert structure(message) == [
        "multipart/mixed",
        "  multipart/alternative",
        "    text/plain",
        "    multipart/related",
        "      text/html",
        "      image/png",
        "  application/pdf",
    ]
    assert message.get_body(("plain",)).get_content().rstrip() == "Hallo ä"  # type: ignore[union-attr]
    [logo] = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert logo["Content-ID"] == "<logo>" and logo.get_content() == b"\x89PNG fake"
    [pdf] = list(message.iter_attachments())
    assert pdf.get_filename() == "invoice.pdf" and pdf.get_content() == b"%PDF-1.4 fake"
    assert received.data.isascii()  # 7bit: no 8BITMIME needed
    assert response.error_code == 0 and response.to == "ann@example.com"
    assert f"<{response.message_id}>" == message["Message-ID"]  # the sink names no queue id


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"text_body": "only text"}, ["text/plain"]),
        ({"html_body": "<b>only html</b>"}, ["text/html"]),
        (
            {
                "html_body": "<img src='cid:a'>",
                "attachments": [posthouse.encode_attachment("a.gif", b"GIF", content_id="a")],
            },
            ["multipart/related", "  text/html", "  image/gif"],
        ),
        (
            {"text_body": "t", "attachments": [posthouse.encode_attachment("a.txt", b"x")]},
            ["multipart/mixed", "  text/plain", "  text/plain"],
        ),
    ],
)
def test_mime_shapes(fields: dict, expected: list[str]) -> None:  # type: ignore[type-arg]
    with RecordingSink() as sink:
        posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}").send(
            posthouse.Email(sender="a@example.com", to="b@example.com", subject="s", **fields)
        )
    assert structure(parse(sink.messages[0].data)) == expected


def test_starttls_and_login_with_credentials_from_the_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server_tls, client_tls = make_tls_contexts(tmp_path)
    with RecordingSink(
        tls_context=server_tls, require_starttls=True, auth={"user@x": "p@ss:word"}, require_auth=True
    ) as sink:
        transport = posthouse.SMTPTransport(
            f"smtp+starttls://user%40x:p%40ss%3Aword@localhost:{sink.port}", ssl_context=client_tls
        )
        transport.send(posthouse.Email(sender="a@example.com", to="b@example.com", subject="s", text_body="t"))
        assert "p@ss" not in repr(transport) and "***" in repr(transport)
    assert sink.logins and sink.logins[0][1] == "user@x"
    assert len(sink.messages) == 1


def test_implicit_tls_with_a_cafile_from_the_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server_tls, _ = make_tls_contexts(tmp_path)
    with RecordingSink(tls_context=server_tls, implicit_tls=True) as sink:
        transport = posthouse.transport_from_url(f"smtps://localhost:{sink.port}?cafile={tmp_path / 'cert.pem'}")
        transport.send(posthouse.Email(sender="a@example.com", to="b@example.com", subject="s", text_body="t"))
    assert len(sink.messages) == 1


def test_starttls_is_never_skipped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with RecordingSink() as sink, pytest.raises(posthouse.ConfigurationError, match="STARTTLS"):
        posthouse.SMTPTransport(f"smtp+starttls://{sink.host}:{sink.port}").send(
            posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t")
        )
    assert sink.messages == []


def test_an_untrusted_certificate_fails_before_anything_is_sent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server_tls, _ = make_tls_contexts(tmp_path)
    with RecordingSink(tls_context=server_tls, implicit_tls=True) as sink:
        with pytest.raises(posthouse.ConnectionFailedError) as failed:
            posthouse.SMTPTransport(f"smtps://localhost:{sink.port}").send(
                posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t")
            )
        assert failed.value.request_sent is False
    assert sink.messages == []


def test_recipients_are_all_or_nothing() -> None:
    with RecordingSink() as sink:
        sink.rcpt_replies["gone@example.com"] = "550 5.1.1 No such user"
        with pytest.raises(posthouse.SMTPRefusedError) as refused:
            posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}").send(
                posthouse.Email(sender="a@example.com", to="ok@example.com, gone@example.com", text_body="t")
            )
    assert refused.value.smtp_code == 550
    assert refused.value.recipients == {"gone@example.com": (550, "5.1.1 No such user")}
    assert sink.messages == []


def test_a_refused_message_and_a_refused_login() -> None:
    with RecordingSink() as sink:
        sink.script.append("554 5.6.0 Rejected")
        with pytest.raises(posthouse.SMTPRefusedError) as refused:
            posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}").send(
                posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t")
            )
        assert (refused.value.smtp_code, refused.value.smtp_message) == (554, "5.6.0 Rejected")


def test_connection_refused_and_usage_errors() -> None:
    transport = posthouse.SMTPTransport(f"smtp://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(posthouse.ConnectionFailedError) as refused:
        transport.send(posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t"))
    assert refused.value.request_sent is False
    naive = posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t")
    naive.send_at = datetime(2030, 1, 1, 9, 30)  # type: ignore[assignment]  # a time without a zone
    with pytest.raises(ValueError, match="send_at needs a time zone"):
        transport.send(naive)
    with pytest.raises(ValueError, match="recipient"):
        transport.send(posthouse.Email(sender="a@example.com", text_body="t"))


@pytest.mark.parametrize("field", ["subject", "tag", "to"])
def test_header_injection_is_refused_before_connecting(field: str) -> None:
    email = posthouse.Email(sender="a@example.com", to="b@example.com", subject="s", tag="t", text_body="t")
    setattr(email, field, getattr(email, field) + "\r\nBcc: victim@example.com")
    with pytest.raises(ValueError):  # noqa: PT011 - the stdlib's own message
        posthouse.SMTPTransport(f"smtp://127.0.0.1:{free_port()}").send(email)


def test_metadata_keys_must_be_header_names() -> None:
    email = posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t", metadata={"a b": "x"})
    with pytest.raises(ValueError, match="header name"):
        posthouse.SMTPTransport(f"smtp://127.0.0.1:{free_port()}").send(email)


async def test_send_async_runs_off_the_event_loop() -> None:
    with RecordingSink() as sink:
        transport = posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}")
        response = await transport.send_async(
            posthouse.Email(sender="a@example.com", to="b@example.com", subject="async", text_body="t")
        )
        await transport.aclose()
    assert parse(sink.messages[0].data)["Subject"] == "async"
    assert response.error_code == 0


@pytest.mark.parametrize("road", ["starttls", "smtps", "plain"])
async def test_into_posthouse_over_smtp(tenant: Tenant, road: str) -> None:
    process = tenant.process
    cafile = process.tls_certificate
    url = {
        "starttls": f"smtp+starttls://{tenant.token}:{tenant.token}@localhost:{process.smtp_port}?cafile={cafile}",
        "smtps": f"smtps://{tenant.token}:{tenant.token}@localhost:{process.smtps_port}?cafile={cafile}",
        # Posthouse allows AUTH without TLS from loopback (smtp_plaintext_auth_networks).
        "plain": f"smtp://{tenant.token}:{tenant.token}@127.0.0.1:{process.smtp_port}",
    }[road]
    transport = posthouse.transport_from_url(url)
    assert isinstance(transport, posthouse.SMTPTransport)
    email = posthouse.Email(
        sender="Shop <shop@example.com>",
        to="ann@example.com",
        bcc="hidden@example.com",
        subject=f"Via {road}",
        text_body="Shipped.",
        html_body="<p>Shipped.</p>",
        tag="orders",
        metadata={"order": "A-1"},
        track_opens=False,
        attachments=[posthouse.encode_attachment("invoice.txt", b"total: 42")],
    )
    response = await transport.send_async(email) if road == "smtps" else transport.send(email)
    # Posthouse's DATA reply names the MessageID ("queued as ..."): the API knows the message by it.
    details = tenant.get(f"/messages/outbound/{response.message_id}/details")
    assert details["Subject"] == f"Via {road}"
    assert details["Tag"] == "orders" and details["Metadata"] == {"order": "A-1"}
    assert details["MessageStream"] == "outbound" and details["TrackOpens"] is False
    assert [b["Email"] for b in details["Bcc"]] == ["hidden@example.com"]
    assert details["TextBody"].strip() == "Shipped."
    dump = parse(tenant.get(f"/messages/outbound/{response.message_id}/dump")["Body"].encode())
    assert dump["X-PM-Tag"] is None  # read and removed by Posthouse
    assert [p.get_filename() for p in dump.iter_attachments()] == ["invoice.txt"]


def test_send_at_travels_as_the_x_posthouse_send_at_header() -> None:
    """Any SMTP server gets the header (only Posthouse acts on it); a datetime is written like the API's SendAt."""
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    with RecordingSink() as sink:
        transport = posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}")
        transport.send(posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t",
                                       send_at="2030-01-31T09:30:00+01:00"))
        email = posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t")
        email.send_at = later  # type: ignore[assignment]  # an aware datetime, as `send(..., send_at=)` takes
        transport.send(email)
        transport.send(posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t"))
    first, second, unscheduled = (parse(m.data) for m in sink.messages)
    assert first["X-Posthouse-Send-At"] == "2030-01-31T09:30:00+01:00"
    assert datetime.fromisoformat(second["X-Posthouse-Send-At"]) == later
    assert unscheduled["X-Posthouse-Send-At"] is None


def test_send_at_over_smtp_schedules_the_message_in_posthouse(tenant: Tenant) -> None:
    process = tenant.process
    transport = posthouse.SMTPTransport(
        f"smtp+starttls://{tenant.token}:{tenant.token}@localhost:{process.smtp_port}?cafile={process.tls_certificate}")
    later = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    response = transport.send(posthouse.Email(sender="app@example.com", to="ann@example.com", subject="Later",
                                              text_body="t", send_at=later.isoformat()))
    now = transport.send(posthouse.Email(sender="app@example.com", to="ann@example.com", subject="Now", text_body="t"))
    listed = tenant.get("/messages/outbound", count=10, offset=0, status="scheduled")
    assert [(m["MessageID"], m["Status"]) for m in listed["Messages"]] == [(response.message_id, "Scheduled")]
    assert tenant.get(f"/messages/outbound/{now.message_id}/details")["Status"] != "Scheduled"
    dump = parse(tenant.get(f"/messages/outbound/{response.message_id}/dump")["Body"].encode())
    assert dump["X-Posthouse-Send-At"] is None  # an instruction to Posthouse, read and removed


async def test_a_wrong_token_is_refused_at_login(tenant: Tenant) -> None:
    url = f"smtp://wrong:wrong@127.0.0.1:{tenant.process.smtp_port}"
    with pytest.raises(posthouse.SMTPRefusedError) as refused:
        posthouse.transport_from_url(url).send(
            posthouse.Email(sender="a@example.com", to="b@example.com", text_body="t")
        )
    assert refused.value.smtp_code == 535


def note(subject: str) -> posthouse.Email:
    return posthouse.Email(sender="app@example.com", to="ann@example.com", subject=subject, text_body="x")


def test_each_send_has_its_own_connection_by_default() -> None:
    with RecordingSink() as sink:
        transport = posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}")
        for i in range(3):
            transport.send(note(str(i)))
        assert (len(sink.messages), sink.connections) == (3, 3)


def test_keep_alive_reuses_one_connection_and_survives_the_server_dropping_it() -> None:
    with RecordingSink(idle_timeout=0.5) as sink, \
            posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}?keepalive=1") as transport:
        assert transport.keep_alive
        for i in range(5):
            transport.send(note(str(i)))
        assert (len(sink.messages), sink.connections) == (5, 1)
        time.sleep(1.0)  # the sink hangs up on the idle connection (421)
        transport.send(note("after"))
        assert [parse(m.data)["Subject"] for m in sink.messages][-1] == "after"
        assert (len(sink.messages), sink.connections) == (6, 2)


async def test_keep_alive_with_concurrent_async_sends_keeps_a_few_connections() -> None:
    with RecordingSink() as sink:
        transport = posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}", keep_alive=True)
        try:
            for _ in range(3):
                await asyncio.gather(*(transport.send_async(posthouse.Email(
                    sender="app@example.com", to=f"r{i}@example.com", subject="c", text_body="x")) for i in range(8)))
        finally:
            await transport.aclose()
        assert len(sink.messages) == 24
        assert sink.connections < 24


def test_attachment_media_type_parameters_and_wrapped_base64_reach_the_part() -> None:
    # What django-anymail and postmarker hand the API works over SMTP too: parameters on the type,
    # base64 wrapped at 76 columns.
    data = "grüße\n".encode() * 40
    wrapped = "\r\n".join(textwrap.wrap(base64.b64encode(data).decode(), 76))
    attachment = posthouse.Attachment(name="notes.txt", content=wrapped, content_type='text/plain; charset="utf-8"')
    with RecordingSink() as sink:
        posthouse.SMTPTransport(f"smtp://{sink.host}:{sink.port}").send(
            posthouse.Email(sender="a@example.com", to="b@example.com", subject="s", text_body="t",
                            attachments=[attachment]))
    [part] = list(parse(sink.messages[0].data).iter_attachments())
    assert part.get_content_type() == "text/plain" and part.get_param("charset") == "utf-8"
    assert part.get_filename() == "notes.txt" and part.get_payload(decode=True) == data
    with pytest.raises(ValueError, match="invalid content type"):
        posthouse.SMTPTransport("smtp://127.0.0.1:1").send(posthouse.Email(
            sender="a@example.com", to="b@example.com", subject="s", text_body="t",
            attachments=[posthouse.Attachment(name="x", content="eA==", content_type="text")]))
