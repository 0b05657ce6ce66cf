"""The Django email backend through Django's own API, landing in the real server."""

from __future__ import annotations

from email import policy
from email.mime.image import MIMEImage
from email.parser import BytesParser

import django
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection, send_mail

import posthouse
from sdk.sdk_support import Tenant
from support import free_port

if not settings.configured:  # once per test run, whichever test module gets here first
    settings.configure(EMAIL_BACKEND="posthouse.django.EmailBackend", DEFAULT_FROM_EMAIL="app@example.com")
    django.setup()


@pytest.fixture
def configured(tenant: Tenant, monkeypatch) -> Tenant:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings, "POSTHOUSE_SERVER_TOKEN", tenant.token, raising=False)
    monkeypatch.setattr(settings, "POSTHOUSE_BASE_URL", tenant.base_url, raising=False)
    return tenant


def find(tenant: Tenant, subject: str) -> dict:  # type: ignore[type-arg]
    [message] = tenant.get("/messages/outbound", count=50, offset=0, subject=subject)["Messages"]
    return tenant.get(f"/messages/outbound/{message['MessageID']}/details")  # type: ignore[no-any-return]


def test_send_mail(configured: Tenant) -> None:
    sent = send_mail("Django hello", "Plain body", None, ["ann@example.com"], html_message="<p>HTML body</p>")
    assert sent == 1
    found = find(configured, "Django hello")
    assert found["From"] == "app@example.com"  # DEFAULT_FROM_EMAIL
    assert [t["Email"] for t in found["To"]] == ["ann@example.com"]
    assert found["TextBody"] == "Plain body" and found["HtmlBody"] == "<p>HTML body</p>"


def test_multi_alternatives_with_attachments_headers_and_extras(configured: Tenant) -> None:
    message = EmailMultiAlternatives(
        "Your report",
        "See attached.",
        "Reports <reports@example.com>",
        ["ann@example.com", "Bob <bob@example.com>"],
        bcc=["audit@example.com"],
        cc=["cc@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Custom": "yes"},
    )
    message.attach_alternative('<p>See attached. <img src="cid:logo"></p>', "text/html")
    message.attach("report.csv", "a,b\n1,2\n", "text/csv")
    message.attach("data.dat", b"\x00\x01\x02", None)
    logo = MIMEImage(b"\x89PNG fake", _subtype="png")
    logo.add_header("Content-ID", "<logo>")
    logo.add_header("Content-Disposition", "inline", filename="logo.png")
    message.attach(logo)
    message.tag = "reports"  # type: ignore[attr-defined]
    message.metadata = {"report": "monthly"}  # type: ignore[attr-defined]
    assert message.send() == 1

    found = find(configured, "Your report")
    assert found["From"] == '"Reports" <reports@example.com>'  # Postmark's form (docs/postmark-api.md §4.3)
    assert [t["Email"] for t in found["To"]] == ["ann@example.com", "bob@example.com"]
    assert [t["Email"] for t in found["Cc"]] == ["cc@example.com"]
    assert [t["Email"] for t in found["Bcc"]] == ["audit@example.com"]
    assert (found["Tag"], found["Metadata"]) == ("reports", {"report": "monthly"})
    assert found["TextBody"] == "See attached."
    dump = configured.get(f"/messages/outbound/{found['MessageID']}/dump")["Body"]
    parsed = BytesParser(policy=policy.default).parsebytes(dump.encode())
    assert parsed["X-Custom"] == "yes" and parsed["Reply-To"] == "help@example.com"
    parts = {p.get_filename(): p for p in parsed.walk() if p.get_filename()}
    assert set(parts) == {"report.csv", "data.dat", "logo.png"}
    assert parts["report.csv"].get_content_type() == "text/csv"
    assert parts["data.dat"].get_content() == b"\x00\x01\x02"
    assert parts["logo.png"]["Content-ID"] == "<logo>" and parts["logo.png"].get_content() == b"\x89PNG fake"


def test_an_html_only_message(configured: Tenant) -> None:
    message = EmailMessage("HTML only", "<h1>Hi</h1>", "app@example.com", ["ann@example.com"])
    message.content_subtype = "html"
    assert message.send() == 1
    found = find(configured, "HTML only")
    assert found["HtmlBody"] == "<h1>Hi</h1>" and not found["TextBody"]


def test_one_batch_call_per_500_messages(configured: Tenant) -> None:
    messages = [EmailMessage(f"Bulk {i}", "x", "app@example.com", [f"u{i}@example.com"]) for i in range(501)]
    with get_connection() as connection:
        # The server refuses a batch of more than 500 (ErrorCode 410): 501 sent means two calls.
        assert connection.send_messages(messages) == 501
    assert configured.get("/messages/outbound", count=1, offset=0)["TotalCount"] == 501


def test_refused_messages_raise_unless_fail_silently(configured: Tenant) -> None:
    good = EmailMessage("Good one", "x", "app@example.com", ["ok@example.com"])
    bad = EmailMessage("Bad one", "x", "app@example.com", ["not-an-address"])
    with pytest.raises(posthouse.InvalidRequestError) as refused:
        get_connection().send_messages([good, bad])
    assert refused.value.error_code == 300
    assert get_connection(fail_silently=True).send_messages([good, bad]) == 1
    assert configured.get("/messages/outbound", count=10, offset=0, subject="Good one")["TotalCount"] == 2


def test_network_errors_raise_unless_fail_silently(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings, "POSTHOUSE_SERVER_TOKEN", "token", raising=False)
    monkeypatch.setattr(settings, "POSTHOUSE_BASE_URL", f"http://127.0.0.1:{free_port()}", raising=False)
    monkeypatch.setattr(settings, "POSTHOUSE_RETRIES", 0, raising=False)
    assert send_mail("s", "b", None, ["a@example.com"], fail_silently=True) == 0
    with pytest.raises(posthouse.ConnectionFailedError):
        send_mail("s", "b", None, ["a@example.com"])


def test_missing_settings_are_improperly_configured(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("POSTHOUSE_SERVER_TOKEN", "POSTHOUSE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings, "POSTHOUSE_SERVER_TOKEN", None, raising=False)
    with pytest.raises(ImproperlyConfigured, match="POSTHOUSE_SERVER_TOKEN"):
        get_connection(fail_silently=True)
    monkeypatch.setattr(settings, "POSTHOUSE_SERVER_TOKEN", "token")
    monkeypatch.setattr(settings, "POSTHOUSE_BASE_URL", None, raising=False)
    with pytest.raises(ImproperlyConfigured, match="POSTHOUSE_BASE_URL"):
        get_connection()
