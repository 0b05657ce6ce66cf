"""django-anymail's Postmark backend, as published on PyPI, pointed at a real `posthouse serve` relaying to a sink.

Django's own mail API (`send_mail`, `EmailMessage`, `EmailMultiAlternatives`) and anymail's additions
(`AnymailMessage`, `anymail_status`, `esp_extra`…) are used exactly as an application would, with only
the documented settings changed: `EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"` and
`ANYMAIL = {"POSTMARK_SERVER_TOKEN": …, "POSTMARK_API_URL": …}`. The options are the ones anymail's own
Postmark integration and backend tests exercise (its PyPI sdist does not ship them, so these are ours).
What arrives at the sink is read with the stdlib's parser; what the API lists is read back over HTTP.
"""

from __future__ import annotations

import struct
import zlib
from email import policy
from email.message import EmailMessage as ParsedMessage
from email.mime.image import MIMEImage
from email.parser import BytesParser
from email.utils import formataddr
from pathlib import Path
from typing import Any

import django
import httpx
import pytest
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from anymail.message import AnymailMessage, attach_inline_image_file
from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection, send_mail

from e2e.relay_tenants import Tenant, new_tenant
from integration.smtp_peers import ReceivedMessage
from support import wait_for

if not settings.configured:  # once per test run, whichever test module gets here first
    settings.configure(EMAIL_BACKEND="posthouse.django.EmailBackend", DEFAULT_FROM_EMAIL="app@example.com")
    django.setup()

SUITE = "anymail"  # tests/e2e/conftest.py marks the tests tests/contract/unsupported.py lists for it
SENDER = "app@example.com"


@pytest.fixture
def app(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    """The Django settings anymail's docs give for Postmark, pointed at the tenant's Posthouse server."""
    monkeypatch.setattr(settings, "EMAIL_BACKEND", "anymail.backends.postmark.EmailBackend")
    monkeypatch.setattr(settings, "ANYMAIL", {"POSTMARK_SERVER_TOKEN": tenant.token,
                                              "POSTMARK_API_URL": tenant.base_url + "/"}, raising=False)
    return tenant


def parse(data: bytes) -> ParsedMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, ParsedMessage)
    return message


def arrivals(tenant: Tenant, count: int) -> list[ReceivedMessage]:
    """Wait for exactly `count` arrivals (one SMTP transaction per recipient: VERP) and return them."""
    wait_for(lambda: len(tenant.arrived()) >= count, timeout=15)
    found = tenant.arrived()
    assert len(found) == count, [m.rcpt_tos for m in found]
    return found


def received_by(tenant: Tenant, address: str) -> list[ParsedMessage]:
    return [parse(m.data) for m in tenant.arrived() if m.rcpt_tos == [address]]


def details(tenant: Tenant, message_id: str) -> dict[str, Any]:
    return dict(tenant.get(f"/messages/outbound/{message_id}/details"))


def body_text(part: Any) -> str:
    """A text part's content; a single-part message's last line ends with the CRLF SMTP ends DATA with."""
    return str(part.get_content()).replace("\r\n", "\n").removesuffix("\n")


def png(path: Path) -> bytes:
    """A real 1×1 PNG (RFC 2083), written to `path` for anymail's attach_inline_image_file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))
    path.write_bytes(data)
    return data


def create_template(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    with tenant.client() as client:
        response = client.post("/templates", json=fields)
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- Django's own API --------------------------------------------------------------------------------------


def test_send_mail_text_and_html(app: Tenant) -> None:
    to = app.address("ann")
    assert send_mail("Hello from anymail", "Plain body", SENDER, [to], html_message="<p>HTML body</p>") == 1
    [received] = arrivals(app, 1)
    assert received.rcpt_tos == [to]
    message = parse(received.data)
    assert message["Subject"] == "Hello from anymail"
    assert message["From"] == SENDER and message["To"] == to
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert body_text(text) == "Plain body" and body_text(html) == "<p>HTML body</p>"
    [listed] = app.get("/messages/outbound", count=10, offset=0)["Messages"]
    assert listed["Subject"] == "Hello from anymail" and listed["Recipients"] == [to]


def test_simple_send_reports_anymail_status_with_posthouse_message_id(app: Tenant) -> None:
    to = app.address("to1")
    message = EmailMultiAlternatives("Anymail Postmark integration test", "Text content", SENDER, [to])
    message.attach_alternative("<p>HTML content</p>", "text/html")
    assert message.send() == 1
    status = message.anymail_status
    assert status.status == {"sent"}
    assert status.recipients[to].status == "sent"
    message_id = status.recipients[to].message_id
    assert status.message_id == message_id
    assert status.esp_response.json()["MessageID"] == message_id
    [listed] = app.get("/messages/outbound", count=10, offset=0)["Messages"]
    assert listed["MessageID"] == message_id
    arrivals(app, 1)
    wait_for(lambda: details(app, message_id)["Status"] == "Sent", timeout=10)


def test_html_only_message_and_several_messages_on_one_connection(app: Tenant) -> None:
    html = EmailMessage("HTML only", "<p>Only <b>HTML</b></p>", SENDER, [app.address("html")])
    html.content_subtype = "html"
    plain = EmailMessage("Plain only", "Only text", SENDER, [app.address("plain")])
    with get_connection() as connection:
        assert connection.send_messages([html, plain]) == 2
    arrivals(app, 2)
    [html_arrival] = received_by(app, app.address("html"))
    assert html_arrival.get_content_type() == "text/html"
    assert body_text(html_arrival) == "<p>Only <b>HTML</b></p>"
    [plain_arrival] = received_by(app, app.address("plain"))
    assert plain_arrival.get_content_type() == "text/plain" and body_text(plain_arrival) == "Only text"


def test_all_options_as_anymail_integration_test_sends_them(app: Tenant, tmp_path: Path) -> None:
    """cc/bcc, reply-to, headers, metadata, tag, tracking, text/csv and inline attachments, and merge_data={}
    making it a batch: one message per `to`, each with its own MessageID."""
    to1, to2 = app.address("to1"), app.address("to2")
    cc1, cc2, bcc1, bcc2 = (app.address(n) for n in ("cc1", "cc2", "bcc1", "bcc2"))
    message = AnymailMessage(
        subject="Anymail Postmark all-options integration test",
        body="This is the text body",
        from_email=formataddr(("Test From, with comma", SENDER)),
        to=[to1, f"Recipient 2 <{to2}>"],
        cc=[cc1, f"Copy 2 <{cc2}>"],
        bcc=[bcc1, f"Blind Copy 2 <{bcc2}>"],
        reply_to=["reply1@example.com", "Reply 2 <reply2@example.com>"],
        headers={"X-Anymail-Test": "value"},
        metadata={"meta1": "simple string", "meta2": 2},
        tags=["tag 1"],
        track_opens=True,
        track_clicks=True,
        merge_data={},
    )
    message.attach("attachment1.txt", "Here is some\ntext for you", "text/plain")
    message.attach("attachment2.csv", "ID,Name\n1,Amy Lina", "text/csv")
    image = png(tmp_path / "sample_image.png")
    cid = attach_inline_image_file(message, str(tmp_path / "sample_image.png"))
    message.attach_alternative(f"<p><b>HTML:</b> with <a href='http://example.com'>link</a>"
                               f"and image: <img src='cid:{cid}'></div>", "text/html")
    assert message.send() == 1

    status = message.anymail_status
    assert status.status == {"sent"}
    assert status.recipients[to1].status == "sent" and status.recipients[to2].status == "sent"
    first, second = status.recipients[to1].message_id, status.recipients[to2].message_id
    assert first != second  # distinct messages
    for address in (cc1, cc2, bcc1, bcc2):
        assert status.recipients[address].status == "sent"

    # Each message goes to its `to` and to every cc and bcc: 2 messages × 5 recipients.
    arrivals(app, 10)
    assert len(received_by(app, cc1)) == 2 and len(received_by(app, bcc2)) == 2
    for to, message_id in ((to1, first), (to2, second)):
        [arrived] = received_by(app, to)
        assert arrived["X-PM-Message-Id"] == message_id
        assert arrived["From"].addresses[0].display_name == "Test From, with comma"
        assert arrived["From"].addresses[0].addr_spec == SENDER
        assert [a.addr_spec for a in arrived["To"].addresses] == [to]
        assert [(a.display_name, a.addr_spec) for a in arrived["Cc"].addresses] == [("", cc1), ("Copy 2", cc2)]
        assert arrived["Bcc"] is None
        assert [a.addr_spec for a in arrived["Reply-To"].addresses] == ["reply1@example.com", "reply2@example.com"]
        assert arrived["X-Anymail-Test"] == "value"
        assert arrived["Subject"] == "Anymail Postmark all-options integration test"

        mixed = list(arrived.iter_parts())
        assert arrived.get_content_type() == "multipart/mixed" and len(mixed) == 3
        related, text_file, csv_file = mixed
        assert related.get_content_type() == "multipart/related"
        alternative, inline = related.iter_parts()
        text, html = alternative.iter_parts()
        assert body_text(text) == "This is the text body"
        assert f"<img src='cid:{cid}'>" in body_text(html)
        assert inline.get_content_type() == "image/png" and inline.get_content_disposition() == "inline"
        assert inline["Content-ID"] == f"<{cid}>"
        assert inline.get_payload(decode=True) == image
        # anymail sends text attachments as 'text/plain; charset="utf-8"': the charset stays on the part.
        assert text_file.get_filename() == "attachment1.txt"
        assert text_file.get_content_type() == "text/plain" and text_file.get_content_charset() == "utf-8"
        assert text_file.get_content_disposition() == "attachment"
        assert body_text(text_file) == "Here is some\ntext for you"
        assert csv_file.get_filename() == "attachment2.csv" and csv_file.get_content_type() == "text/csv"
        assert csv_file.get_payload(decode=True) == b"ID,Name\n1,Amy Lina"

        found = details(app, message_id)
        assert found["Metadata"] == {"meta1": "simple string", "meta2": "2"}
        assert found["Tag"] == "tag 1"
        assert found["TrackOpens"] is True and found["TrackLinks"] == "HtmlAndText"
        assert [t["Email"] for t in found["To"]] == [to]
        assert sorted(found["Recipients"]) == sorted([to, cc1, cc2, bcc1, bcc2])
        assert sorted(found["Attachments"]) == ["attachment1.txt", "attachment2.csv", "sample_image.png"]

    for message_id in (first, second):
        wait_for(lambda mid=message_id: details(app, mid)["Status"] == "Sent", timeout=10)  # type: ignore[misc]


def test_attachment_forms_django_offers(app: Tenant, tmp_path: Path) -> None:
    """attach(name, str, type) with a non-ASCII name, attach(name, bytes) with the type guessed from the name,
    attach_file(path), and a MIMEImage part with a filename: each arrives as sent."""
    image = png(tmp_path / "chart.png")
    message = EmailMultiAlternatives("Files", "See the files.", SENDER, [app.address("files")])
    message.attach("Une pièce jointe.html", "<p>\u2019</p>", "text/html")
    message.attach("logo.png", image)
    message.attach_file(str(tmp_path / "chart.png"))
    part = MIMEImage(image, "png")
    part.add_header("Content-Disposition", "attachment", filename="part.png")
    message.attach(part)
    assert message.send() == 1
    [received] = arrivals(app, 1)
    files = [p for p in parse(received.data).iter_attachments() if isinstance(p, ParsedMessage)]
    assert [(p.get_filename(), p.get_content_type()) for p in files] == [
        ("Une pièce jointe.html", "text/html"), ("logo.png", "image/png"), ("chart.png", "image/png"),
        ("part.png", "image/png")]
    assert files[0].get_content_charset() == "utf-8" and files[0].get_content() == "<p>\u2019</p>"
    assert all(p.get_payload(decode=True) == image for p in files[1:])
    found = details(app, message.anymail_status.message_id)
    assert found["Attachments"] == ["Une pièce jointe.html", "logo.png", "chart.png", "part.png"]


def test_merge_metadata_and_merge_headers_without_a_template(app: Tenant) -> None:
    alice, bob = app.address("alice"), app.address("bob")
    message = EmailMultiAlternatives("Per-recipient extras", "Same body", SENDER, [alice, f"Bob <{bob}>"],
                                     headers={"X-Shared": "both", "X-Who": "default"})
    message.metadata = {"notification_batch": "zx912"}
    message.merge_metadata = {alice: {"order_id": 123, "tier": "premium"},
                              bob: {"order_id": 678}}
    message.merge_headers = {alice: {"X-Who": "alice"}, bob: {"X-Who": "bob"}}
    assert message.send() == 1
    status = message.anymail_status
    assert status.status == {"sent"}
    arrivals(app, 2)
    for address, who, metadata in ((alice, "alice", {"order_id": "123", "tier": "premium"}),
                                   (bob, "bob", {"order_id": "678"})):
        [arrived] = received_by(app, address)
        assert arrived["X-Who"] == who and arrived["X-Shared"] == "both"
        found = details(app, status.recipients[address].message_id)
        assert found["Metadata"] == {**metadata, "notification_batch": "zx912"}


# -- templates ---------------------------------------------------------------------------------------------


def test_template_by_id_with_merge_data_batch(app: Tenant) -> None:
    template = create_template(app, Name="Order", Alias="order-confirmation",
                               Subject="Order {{order_no}} for {{name}}",
                               TextBody="Hi {{name}}, order {{order_no}} from {{site}}.",
                               HtmlBody="<p>Hi {{name}}, order {{order_no}} from {{site}}.</p>")
    first, second = app.address("test+to1"), app.address("test+to2")
    message = AnymailMessage(
        from_email=SENDER,
        to=[first, f"Second Recipient <{second}>"],
        template_id=template["TemplateId"],
        merge_data={first: {"name": "Recipient 1", "order_no": "12345"}, second: {"order_no": "6789"},
                    app.address("nobody"): {"name": "Not a recipient for this message"}},
        merge_global_data={"name": "Valued Customer", "site": "ExampleCo"},
        merge_metadata={first: {"order": "12345"}, second: {"order": "6789"}},
        merge_headers={first: {"X-Order": "12345"}, second: {"X-Order": "6789"}},
    )
    assert message.send() == 1
    assert message.anymail_status.status == {"sent"}
    ids = {a: message.anymail_status.recipients[a].message_id for a in (first, second)}
    assert len(set(ids.values())) == 2
    arrivals(app, 2)
    for address, subject, text, order in (
        (first, "Order 12345 for Recipient 1", "Hi Recipient 1, order 12345 from ExampleCo.", "12345"),
        (second, "Order 6789 for Valued Customer", "Hi Valued Customer, order 6789 from ExampleCo.", "6789"),
    ):
        [arrived] = received_by(app, address)
        assert arrived["Subject"] == subject and arrived["X-Order"] == order
        text_part, html_part = arrived.iter_parts()
        assert body_text(text_part) == text
        assert body_text(html_part) == f"<p>{text}</p>"
        found = details(app, ids[address])
        assert found["Metadata"] == {"order": order}
        assert found["Subject"] == subject


def test_template_by_alias_single_send_with_merge_global_data(app: Tenant) -> None:
    create_template(app, Name="Welcome", Alias="welcome-message", Subject="Welcome, {{name}}",
                    TextBody="Hello {{name}} of {{group}}.")
    to = app.address("alice")
    message = AnymailMessage(from_email=SENDER, to=[to], template_id="welcome-message",
                             merge_global_data={"name": "Alice", "group": "Developers"})
    assert message.send() == 1
    assert message.anymail_status.status == {"sent"}
    [received] = arrivals(app, 1)
    arrived = parse(received.data)
    assert arrived["Subject"] == "Welcome, Alice"
    assert body_text(arrived) == "Hello Alice of Developers."
    # merge_data for a single recipient is a single templated send too, its data merged over the global data.
    single = AnymailMessage(from_email=SENDER, to=[app.address("bob")], template_id="welcome-message",
                            merge_data={app.address("bob"): {"name": "Bob"}},
                            merge_global_data={"name": "Nobody", "group": "Users"})
    assert single.send() == 1
    arrivals(app, 2)
    [bob] = received_by(app, app.address("bob"))
    assert bob["Subject"] == "Welcome, Bob" and body_text(bob) == "Hello Bob of Users."


def test_a_cc_only_send_reports_anymail_status(app: Tenant) -> None:
    """Postmark takes a message without To when it has Cc or Bcc, and anymail reads its answer without a To."""
    cc = app.address("cc-only")
    message = EmailMessage("Only a copy", "Body", SENDER, cc=[cc])
    assert message.send() == 1
    assert message.anymail_status.recipients[cc].status == "sent"
    [received] = arrivals(app, 1)
    assert received.rcpt_tos == [cc] and parse(received.data)["To"] is None


# -- esp_extra, refusals -----------------------------------------------------------------------------------


def test_esp_extra_is_merged_into_the_request_and_can_switch_server_token(app: Tenant) -> None:
    other = new_tenant(app.process, app.sink)
    message = EmailMessage("Via esp_extra", "Body", SENDER, [app.address("extra")])
    message.esp_extra = {"MessageStream": "broadcast", "server_token": other.token}
    assert message.send() == 1
    message_id = message.anymail_status.message_id
    arrivals(app, 1)
    assert app.get("/messages/outbound", count=10, offset=0, messagestream="broadcast")["TotalCount"] == 0
    [listed] = other.get("/messages/outbound", count=10, offset=0, messagestream="broadcast")["Messages"]
    assert listed["MessageID"] == message_id and listed["MessageStream"] == "broadcast"


def test_inactive_recipients_are_rejected_in_anymail_status(app: Tenant) -> None:
    gone, fine = app.address("hardbounce"), app.address("fine")
    with app.client() as client:
        response = client.post("/message-streams/outbound/suppressions",
                               json={"Suppressions": [{"EmailAddress": gone}]})
    assert response.status_code == 200, response.text
    mixed = EmailMessage("Some inactive", "Body", SENDER, [gone, f"Fine <{fine}>"])
    assert mixed.send() == 1
    assert mixed.anymail_status.recipients[gone].status == "rejected"
    assert mixed.anymail_status.recipients[fine].status == "sent"
    assert mixed.anymail_status.status == {"sent", "rejected"}
    all_gone = EmailMessage("All inactive", "Body", SENDER, [gone.upper()])
    with pytest.raises(AnymailRecipientsRefused):
        all_gone.send()
    assert all_gone.anymail_status.recipients[gone.upper()].status == "rejected"
    [received] = arrivals(app, 1)
    assert received.rcpt_tos == [fine]


def test_refusals_raise_anymail_api_errors_with_posthouse_messages(app: Tenant,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    message = EmailMessage("Bad sender", "Body", "webmaster@localhost", [app.address("x")])  # Django's default From
    with pytest.raises(AnymailAPIError) as caught:
        message.send()
    assert caught.value.status_code == 422
    assert "Invalid 'From' address" in str(caught.value)

    monkeypatch.setattr(settings, "ANYMAIL", {"POSTMARK_SERVER_TOKEN": "Hey, that's not a server token!",
                                              "POSTMARK_API_URL": app.base_url + "/"})
    with pytest.raises(AnymailAPIError) as caught:
        EmailMessage("Bad token", "Body", SENDER, [app.address("x")]).send()
    assert caught.value.status_code == 401
    assert "valid Server token" in str(caught.value)
    assert app.get("/messages/outbound", count=10, offset=0)["TotalCount"] == 0
    assert httpx.get(app.base_url + "/healthz", timeout=5).status_code == 200
