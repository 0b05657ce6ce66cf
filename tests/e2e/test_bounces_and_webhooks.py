"""Issue 5 end to end: the real server process, real webhook receivers and real bounces on loopback."""

from __future__ import annotations

import base64
import os
import shutil
import smtplib
import sys
import time
from pathlib import Path

import postmark
import pytest
from postmarker.core import PostmarkClient
from standardwebhooks.webhooks import Webhook

from integration.smtp_peers import RecordingSink
from support import LOOPBACK_WEBHOOKS_ENV, ServerProcess, wait_for
from webhook_receiver import WebhookReceiver

MESSAGE = {"From": "app@example.com", "To": "user@example.com", "Subject": "Hello", "TextBody": "Hi"}
# The webhook receivers listen on loopback, which the operator must allow.
FAST = {"POSTHOUSE_RETRY_SCHEDULE": "300ms", "POSTHOUSE_POLL_INTERVAL": "200ms",
        "POSTHOUSE_WEBHOOK_RETRY_SCHEDULE": "300ms,300ms,300ms", "POSTHOUSE_WEBHOOK_TIMEOUT": "2s",
        **LOOPBACK_WEBHOOKS_ENV}
ALL_TRIGGERS = {"Delivery": {"Enabled": True}, "Bounce": {"Enabled": True, "IncludeContent": True},
                "SpamComplaint": {"Enabled": True, "IncludeContent": False},
                "SubscriptionChange": {"Enabled": True}}


def create_webhook(server: ServerProcess, url: str, triggers: dict | None = None) -> dict:  # type: ignore[type-arg]
    with server.client() as client:
        answer = client.post("/webhooks", json={"Url": url, "MessageStream": "outbound",
                                                "Triggers": triggers or ALL_TRIGGERS})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def send(server: ServerProcess, **fields: str) -> str:
    with server.client() as client:
        answer = client.post("/email", json={**MESSAGE, **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()["MessageID"]  # type: ignore[no-any-return]


def get(server: ServerProcess, path: str, **params: object) -> dict:  # type: ignore[type-arg]
    with server.client() as client:
        answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def verified(secret: str, request) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """The payload, after the standardwebhooks package has checked its signature."""
    return Webhook(secret).verify(request.body, request.headers)  # type: ignore[no-any-return]


@pytest.fixture
def server(tmp_path, database_url: str):  # type: ignore[no-untyped-def]
    with ServerProcess(tmp_path / "data", database_url, env=FAST) as process:
        yield process


def test_a_delivery_posts_a_signed_webhook_that_standardwebhooks_verifies(server: ServerProcess) -> None:
    with WebhookReceiver() as receiver:
        webhook = create_webhook(server, receiver.url)
        assert webhook["Secret"].startswith("whsec_")
        message_id = send(server, Metadata={"order": "42"}, Tag="welcome")  # type: ignore[arg-type]
        (request,) = receiver.wait(lambda: receiver.of_type("Delivery"))
        payload = verified(webhook["Secret"], request)
    assert payload["MessageID"] == message_id and payload["Recipient"] == "user@example.com"
    assert payload["Tag"] == "welcome" and payload["Metadata"] == {"order": "42"}
    assert payload["MessageStream"] == "outbound" and payload["DeliveredAt"].endswith("Z")
    assert request.headers["webhook-id"].startswith("msg_")
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 43 + "=").verify(request.body, request.headers)


def test_a_receiver_failing_twice_gets_three_attempts_with_one_webhook_id(server: ServerProcess) -> None:
    with WebhookReceiver(script=[500, 500]) as receiver:
        webhook = create_webhook(server, receiver.url, {"Delivery": {"Enabled": True}})
        send(server)
        attempts = receiver.wait(lambda: len(receiver.requests) >= 3 and receiver.requests)
        time.sleep(1.2)  # the schedule would allow a fourth by now: there must be none
        assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in attempts}) == 1
    for request in attempts:
        verified(webhook["Secret"], request)
    log = wait_for(lambda: (d := get(server, f"/webhooks/{webhook['ID']}/deliveries", count=10, offset=0))
                   ["Deliveries"][0]["State"] == "delivered" and d)
    (delivery,) = log["Deliveries"]
    assert [a["StatusCode"] for a in delivery["History"]] == [500, 500, 200]
    assert delivery["History"][0]["ResponseExcerpt"] == "answer 500"


def test_a_410_answer_stops_the_retries(server: ServerProcess) -> None:
    with WebhookReceiver(script=[410]) as receiver:
        webhook = create_webhook(server, receiver.url, {"Delivery": {"Enabled": True}})
        send(server)
        receiver.wait(lambda: receiver.requests)
        time.sleep(1.5)
        assert len(receiver.requests) == 1
        log = get(server, f"/webhooks/{webhook['ID']}/deliveries", count=10, offset=0)
        (delivery,) = log["Deliveries"]
        assert delivery["State"] == "stopped" and delivery["NextAttemptAt"] is None
        # Redelivery queues it once more, by hand.
        with server.client() as client:
            answer = client.post(f"/webhooks/{webhook['ID']}/deliveries/{delivery['ID']}/redeliver")
        assert answer.status_code == 200, answer.text
        receiver.wait(lambda: len(receiver.requests) == 2)
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]


def test_a_post_interrupted_by_kill_9_arrives_after_the_restart(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess(tmp_path / "data", database_url, env=FAST)
    with WebhookReceiver(script=["hang"]) as receiver:
        try:
            server.start()
            webhook = create_webhook(server, receiver.url, {"Delivery": {"Enabled": True}})
            message_id = send(server)
            receiver.wait(lambda: receiver.requests)  # the post is in flight, unanswered
            server.kill()
            server.start()
            # The restarted process finds its predecessor gone (its lock file is free) and the post goes again.
            receiver.wait(lambda: len(receiver.requests) >= 2, timeout=30)
        finally:
            server.stop()
    first, again = receiver.requests[:2]
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert verified(webhook["Secret"], again)["MessageID"] == message_id


def test_bounce_testing_bounces_suppresses_posts_and_then_refuses_with_406(server: ServerProcess) -> None:
    gone = "HardBounce@bounce-testing.postmarkapp.com"
    with WebhookReceiver() as receiver:
        webhook = create_webhook(server, receiver.url)
        message_id = send(server, To=gone)
        (bounce_post,) = receiver.wait(lambda: receiver.of_type("Bounce"))
        (change_post,) = receiver.wait(lambda: receiver.of_type("SubscriptionChange"))
        bounce = verified(webhook["Secret"], bounce_post)
        change = verified(webhook["Secret"], change_post)
    assert bounce["Type"] == "HardBounce" and bounce["TypeCode"] == 1 and bounce["Email"] == gone
    assert bounce["MessageID"] == message_id and bounce["Inactive"] is True and bounce["CanActivate"] is True
    stored = get(server, f"/bounces/{bounce['ID']}")
    assert stored["Email"] == gone and stored["MessageID"] == message_id
    assert change["SuppressSending"] is True and change["SuppressionReason"] == "HardBounce"
    assert change["Origin"] == "Recipient" and change["Recipient"] == gone
    events = get(server, f"/messages/outbound/{message_id}/details")["MessageEvents"]
    assert [e["Type"] for e in events] == ["Bounced", "SubscriptionChanged"]
    suppressions = get(server, "/message-streams/outbound/suppressions/dump")["Suppressions"]
    assert [(s["EmailAddress"], s["SuppressionReason"]) for s in suppressions] == [(gone.lower(), "HardBounce")]

    # The official client raises its inactive-recipient error, with the address pulled from the text.
    with postmark.sync.ServerClient(server.server_token, base_url=server.base_url, retries=0) as client, \
            pytest.raises(postmark.exceptions.InactiveRecipientException) as raised:
        client.outbound.send({**MESSAGE, "To": gone})
    assert raised.value.inactive_recipients == [gone.lower()]


def test_a_spam_complaint_by_header_suppresses_as_spam_complaint(server: ServerProcess) -> None:
    with WebhookReceiver() as receiver:
        create_webhook(server, receiver.url)
        send(server, To="reader@example.com", Headers=[{"Name": "X-PM-Bounce-Type", "Value": "SpamComplaint"}])  # type: ignore[arg-type]
        (complaint,) = receiver.wait(lambda: receiver.of_type("SpamComplaint"))
    assert complaint.json["Type"] == "SpamComplaint" and complaint.json["TypeCode"] == 100001
    assert "Content" not in complaint.json  # IncludeContent is off for spam complaints here
    suppressions = get(server, "/message-streams/outbound/suppressions/dump")["Suppressions"]
    assert [(s["EmailAddress"], s["SuppressionReason"]) for s in suppressions] == \
        [("reader@example.com", "SpamComplaint")]


def test_legacy_hook_urls_set_through_postmarker_receive_bounces_and_deliveries(server: ServerProcess) -> None:
    """The server-level BounceHookUrl and DeliveryHookUrl, set the way older integrations set them (postmarker's
    `server.edit`), post like webhooks of the default stream: signed, and with the URL's Basic credentials."""
    gone = "HardBounce@bounce-testing.postmarkapp.com"
    with WebhookReceiver() as receiver:
        base = f"127.0.0.1:{receiver.port}"
        pm = PostmarkClient(server_token=server.server_token, root_api_url=server.base_url + "/")
        edited = pm.server.edit(BounceHookUrl=f"http://hooks:s3cret@{base}/bounces",
                                DeliveryHookUrl=f"http://{base}/deliveries", IncludeBounceContentInHook=True)
        assert edited["DeliveryHookUrl"] == f"http://{base}/deliveries"
        assert get(server, "/webhooks") == {"Webhooks": []}
        bounced = send(server, To=gone)
        delivered = send(server, To="reader@example.com")
        (bounce_post,) = receiver.wait(lambda: receiver.of_type("Bounce"))
        delivery_posts = receiver.wait(lambda: receiver.of_type("Delivery"))
    assert bounce_post.path == "/bounces"
    assert bounce_post.headers["authorization"] == "Basic " + base64.b64encode(b"hooks:s3cret").decode()
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(bounce_post.headers)
    assert (bounce_post.json["MessageID"], bounce_post.json["Type"]) == (bounced, "HardBounce")
    assert "Content" in bounce_post.json
    assert [(p.path, p.json["MessageID"]) for p in delivery_posts] == [("/deliveries", delivered)]


# -- bounces that come back later, to the VERP return path ---------------------------------------


@pytest.fixture
def relaying(tmp_path, database_url: str):  # type: ignore[no-untyped-def]
    with RecordingSink() as sink, ServerProcess(
            tmp_path / "data", database_url, delivery="relay", relay_url=f"smtp://127.0.0.1:{sink.port}",
            env={**FAST, "POSTHOUSE_SMTP_HOSTNAME": "localhost"}) as server:
        yield server, sink


def smtp_bounce(server: ServerProcess, to: str, body: bytes) -> tuple[int, bytes]:
    """Deliver a message as a remote MTA would: no AUTH, null sender."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.ehlo("mx.remote.test")
        client.mail("<>")
        code, text = client.rcpt(to)
        if code != 250:
            return code, text
        return client.data(body)


def dsn(recipient: str, original_id: str, status: str = "5.1.1") -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes one."""
    return (
        "From: MAILER-DAEMON@mx.remote.test (Mail Delivery System)\r\n"
        "To: bounces@localhost\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.remote.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{original_id}@example.com>\r\n"
        "Subject: Hello\r\n\r\n--B--\r\n"
    ).encode()


def test_a_later_dsn_to_the_return_path_becomes_a_hard_bounce(relaying) -> None:  # type: ignore[no-untyped-def]
    server, sink = relaying
    message_id = send(server)
    wait_for(lambda: sink.messages)
    return_path = sink.messages[0].mail_from
    code, _ = smtp_bounce(server, return_path, dsn("user@example.com", message_id))
    assert code == 250
    bounces = wait_for(lambda: (b := get(server, "/bounces", count=10, offset=0))["TotalCount"] == 1 and b)
    (bounce,) = bounces["Bounces"]
    assert (bounce["Type"], bounce["Email"], bounce["MessageID"]) == ("HardBounce", "user@example.com", message_id)
    assert bounce["DumpAvailable"] is True
    assert "Recipient address rejected" in get(server, f"/bounces/{bounce['ID']}/dump")["Body"]
    events = get(server, f"/messages/outbound/{message_id}/details")["MessageEvents"]
    assert [e["Type"] for e in events] == ["Delivered", "Bounced", "SubscriptionChanged"]


def test_forged_and_foreign_bounces_are_never_attributed(relaying) -> None:  # type: ignore[no-untyped-def]
    server, sink = relaying
    message_id = send(server, To="a@example.com, b@example.com")
    # One return path per recipient, so each names exactly one delivery.
    wait_for(lambda: len(sink.messages) == 2)
    paths = {m.rcpt_tos[0]: m.mail_from for m in sink.messages}
    assert paths["a@example.com"] != paths["b@example.com"]
    return_path = paths["a@example.com"]
    local, domain = return_path.split("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    # A token that fails its MAC names nothing: refused at the end of data.
    assert smtp_bounce(server, forged, dsn("a@example.com", message_id))[0] == 550
    # Not our domain: an unauthenticated client may not relay.
    assert smtp_bounce(server, "someone@elsewhere.test", dsn("a@example.com", message_id))[0] == 530
    # Garbage to a real return path: accepted and discarded.
    assert smtp_bounce(server, return_path, b"Subject: hi\r\n\r\nnot a bounce at all\r\n")[0] == 250
    time.sleep(0.5)
    assert get(server, "/bounces", count=10, offset=0)["TotalCount"] == 0
    # A report naming b, sent to a's return path, is a's: the body cannot aim at another recipient.
    assert smtp_bounce(server, return_path, dsn("b@example.com", message_id))[0] == 250
    bounces = wait_for(lambda: (b := get(server, "/bounces", count=10, offset=0))["TotalCount"] == 1 and b)
    assert [b["Email"] for b in bounces["Bounces"]] == ["a@example.com"]


def test_an_arf_complaint_is_a_spam_complaint(relaying) -> None:  # type: ignore[no-untyped-def]
    server, sink = relaying
    message_id = send(server, To="reader@example.com")
    wait_for(lambda: sink.messages)
    report = (
        "From: feedback@isp.test\r\nTo: abuse@localhost\r\nSubject: FW: Hello\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ISP/1.0\r\n"
        "Version: 1\r\nOriginal-Rcpt-To: <reader@example.com>\r\n\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\nFrom: app@example.com\r\nTo: reader@example.com\r\n"
        f"Subject: Hello\r\nMessage-ID: <{message_id}@example.com>\r\n\r\nHi\r\n--F--\r\n").encode()
    assert smtp_bounce(server, sink.messages[0].mail_from, report)[0] == 250
    bounces = wait_for(lambda: (b := get(server, "/bounces", count=10, offset=0))["TotalCount"] == 1 and b)
    (bounce,) = bounces["Bounces"]
    assert (bounce["Type"], bounce["Email"], bounce["CanActivate"]) == ("SpamComplaint", "reader@example.com", False)
    suppressions = get(server, "/message-streams/outbound/suppressions/dump")["Suppressions"]
    assert [s["SuppressionReason"] for s in suppressions] == ["SpamComplaint"]


def _postfix() -> type:
    if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
        if os.environ.get("CI"):
            raise AssertionError("Postfix is not installed; .ci/run installs it")
        pytest.skip("Postfix is not installed (bench/install-peers.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root")
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    from postfix_peer import PostfixInstance

    return PostfixInstance  # type: ignore[no-any-return]


def test_a_dsn_from_a_real_postfix_is_attributed(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """Posthouse relays to Postfix; Postfix accepts, fails delivery (error transport) and sends its DSN to
    the VERP return path through its relayhost, which is Posthouse's SMTP listener."""
    postfix_instance = _postfix()
    smtp_port = __import__("support").free_port()
    extra = ("transport_maps = inline:{ { example.net = error:5.1.1 mailbox unavailable } }\n"
             "smtpd_reject_unlisted_recipient = no\n")
    with postfix_instance(relay_port=smtp_port, extra_config=extra) as postfix:
        server = ServerProcess(tmp_path / "data", database_url, delivery="relay",
                               relay_url=f"smtp://127.0.0.1:{postfix.listen_port}",
                               env={**FAST, "POSTHOUSE_SMTP_HOSTNAME": "localhost"})
        server.smtp_port = smtp_port
        with server:
            message_id = send(server, To="nobody@example.net")
            bounces = wait_for(lambda: (b := get(server, "/bounces", count=10, offset=0))["TotalCount"] >= 1 and b,
                               timeout=60)
    (bounce,) = bounces["Bounces"]
    assert (bounce["Type"], bounce["Email"], bounce["MessageID"]) == ("HardBounce", "nobody@example.net", message_id)
    assert "mailbox unavailable" in bounce["Details"]

