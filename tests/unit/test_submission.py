"""Raw submitted messages: X-PM headers applied and removed, our headers set, the body untouched."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.server.domain.submission import _decoded, compose_submitted
from posthouse.server.errors import ApiError

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
BODY = b"Hello,\r\n.leading dot stays as sent\r\n\r\nBye\r\n"


def message(*headers: str, body: bytes = BODY) -> bytes:
    return "".join(h + "\r\n" for h in headers).encode() + b"\r\n" + body


def compose(data: bytes, recipients: tuple[str, ...] = ("to@example.com",), mail_from: str = "bounce@example.com"):  # type: ignore[no-untyped-def]
    return compose_submitted(data, mail_from=mail_from, recipients=list(recipients), now=NOW)


def test_x_pm_headers_are_honoured_and_removed() -> None:
    composed = compose(message(
        "From: Shop <shop@example.com>", "To: Ann <to@example.com>", "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        "X-PM-Message-Stream: broadcast", "X-PM-Tag: welcome", "X-PM-Metadata-order: 42",
        "X-PM-Metadata-color:\r\n blue", "X-PM-TrackOpens: true", "X-PM-TrackLinks: htmlandtext",
        "Message-ID: <client@example.com>", "Bcc: secret@example.com"))
    assert composed.stream == "broadcast"
    assert composed.tag == "welcome"
    assert composed.metadata == {"order": "42", "color": "blue"}
    assert composed.track_opens is True and composed.track_links == "HtmlAndText"
    assert composed.subject == "Grüße"
    assert composed.sender.email == "shop@example.com" and composed.sender.name == "Shop"
    assert composed.envelope_from == "bounce@example.com"
    parsed = BytesParser(policy=policy.default).parsebytes(composed.content)
    assert not [k for k in parsed if k.lower().startswith("x-pm-") and k.lower() != "x-pm-message-id"]
    assert parsed["Bcc"] is None
    assert parsed["X-PM-Message-Id"] == composed.message_id
    assert parsed["Message-ID"] == f"<{composed.message_id}@posthouse>"
    assert parsed["Date"] is not None
    assert composed.content.endswith(b"\r\n\r\n" + BODY)


def test_keep_id_keeps_the_clients_message_id() -> None:
    composed = compose(message("From: a@example.com", "Message-ID: <mine@example.com>", "X-PM-KeepID: true"))
    assert b"Message-ID: <mine@example.com>\r\n" in composed.content
    assert composed.content.count(b"Message-ID:") == 1


def test_repeated_metadata_keys_get_a_suffix() -> None:
    composed = compose(message("From: a@example.com", "X-PM-Metadata-k: 1", "X-PM-Metadata-k: 2",
                               "X-PM-Metadata-k: 3"))
    assert composed.metadata == {"k": "1", "k2": "2", "k3": "3"}


def test_envelope_recipients_decide_and_bcc_is_derived() -> None:
    composed = compose(message("From: a@example.com", "To: to@example.com", "Cc: cc@example.com"),
                       recipients=("to@example.com", "cc@example.com", "hidden@example.com", "TO@example.com"))
    assert composed.recipients == ["to@example.com", "cc@example.com", "hidden@example.com"]
    assert [a.email for a in composed.bcc] == ["hidden@example.com"]
    assert [a.email for a in composed.cc] == ["cc@example.com"]


def test_existing_date_is_kept_and_headers_only_message_gets_an_empty_body() -> None:
    composed = compose(b"From: a@example.com\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nSubject: s\r\n")
    assert composed.content.count(b"Date:") == 1
    assert composed.content.endswith(b"\r\n\r\n")


def test_null_sender_uses_the_from_address_for_the_envelope() -> None:
    assert compose(message("From: a@example.com"), mail_from="").envelope_from == "a@example.com"


def test_a_message_without_from_takes_it_from_the_envelope() -> None:
    # smtplib's classic sendmail(from_addr, to_addrs, msg) with a message that has only Subject and To.
    data = message("Subject: SMTP Test", "To: recipient@example.com")
    composed = compose(data, mail_from="no-reply@mailservice.com")
    assert composed.sender.email == "no-reply@mailservice.com" and composed.sender.name is None
    assert composed.envelope_from == "no-reply@mailservice.com"
    assert composed.content.count(b"\r\nFrom: no-reply@mailservice.com\r\n") == 1
    parsed = BytesParser(policy=policy.default).parsebytes(composed.content)
    assert parsed.get_all("From") == ["no-reply@mailservice.com"]
    assert parsed["Date"] is not None and parsed["Message-ID"] == f"<{composed.message_id}@posthouse>"
    assert composed.content.endswith(b"\r\n\r\n" + BODY)


def test_a_from_header_is_never_replaced_by_the_envelope() -> None:
    composed = compose(message("From: Shop <shop@example.com>"), mail_from="bounces@example.org")
    assert composed.sender.email == "shop@example.com"
    assert composed.content.count(b"From:") == 1


@pytest.mark.parametrize(("headers", "mail_from", "text"), [
    # The null reverse path names nobody: there is no From to add.
    (("To: x@example.com",), "", "no From header, and the envelope sender is null (MAIL FROM:<>)"),
    (("To: x@example.com",), "daemon@localhost", "envelope sender 'daemon@localhost' is not a valid address"),
    # A From that is there but names no mailbox is refused, not passed on nor replaced.
    (("From: Jane Doe",), "a@example.com", "Invalid From header: 'Jane Doe' names no valid address"),
    (("From: <>",), "a@example.com", "Invalid From header: '<>'"),
    (("From: undisclosed-recipients:;",), "a@example.com", "names no valid address"),
    (("From:",), "a@example.com", "names no valid address"),
])
def test_refused_senders(headers: tuple[str, ...], mail_from: str, text: str) -> None:
    with pytest.raises(ApiError) as info:
        compose(message(*headers), mail_from=mail_from)
    assert info.value.error_code == 300
    assert text in info.value.message


@pytest.mark.parametrize(("headers", "text"), [
    (("From: a@example.com", "X-PM-TrackLinks: Sometimes"), "X-PM-TrackLinks"),
    (("From: a@example.com", "X-PM-TrackOpens: perhaps"), "X-PM-TrackOpens"),
    (("From: a@example.com", *(f"X-PM-Metadata-k{i}: v" for i in range(11))), "at most 10"),
    (("From: a@example.com", "X-PM-Metadata-key: " + "v" * 81), "too long"),
    (("From: a@example.com", "X-PM-Tag: " + "t" * 1001), "too long"),
])
def test_refusals(headers: tuple[str, ...], text: str) -> None:
    with pytest.raises(ApiError) as info:
        compose(message(*headers))
    assert info.value.error_code == 300
    assert text in info.value.message


def test_the_received_trace_comes_first() -> None:
    composed = compose_submitted(message("From: a@example.com"), mail_from="a@example.com",
                                 recipients=["b@example.com"], now=NOW,
                                 received="from [127.0.0.1] by mx.example.org (Posthouse) with ESMTPSA")
    first = composed.content.split(b"\r\n", 1)[0]
    expected = f"Received: from [127.0.0.1] by mx.example.org (Posthouse) with ESMTPSA id {composed.message_id};"
    assert first == expected.encode()
    parsed = BytesParser(policy=policy.default).parsebytes(composed.content)
    assert parsed["Received"].endswith("+0000")


def test_header_values_are_unfolded_and_decoded_for_the_record() -> None:
    composed = compose(message("From: =?utf-8?q?J=C3=B6rg?= <jorg@example.com>", "To: Ann <to@example.com>",
                               "Subject: A folded\r\n\tsubject with =? in it",
                               "Cc: =?utf-8?b?w4VzYQ==?=\r\n <c@example.com>"),
                       recipients=("to@example.com", "c@example.com"))
    assert (composed.sender.name, composed.sender.email) == ("Jörg", "jorg@example.com")
    assert [(a.name, a.email) for a in composed.to] == [("Ann", "to@example.com")]
    assert [(a.name, a.email) for a in composed.cc] == [("Åsa", "c@example.com")]
    assert composed.subject == "A folded subject with =? in it"


def test_each_message_gets_its_own_addresses() -> None:
    # The parsed header values are kept for the next message with the same ones; nothing else carries over.
    first = compose(message("From: App <app@example.com>", "To: one@example.com"), recipients=("one@example.com",))
    second = compose(message("From: App <app@example.com>", "To: two@example.com"), recipients=("two@example.com",))
    again = compose(message("From: App <app@example.com>", "To: one@example.com"), recipients=("one@example.com",))
    assert [a.email for a in first.to] == [a.email for a in again.to] == ["one@example.com"]
    assert [a.email for a in second.to] == ["two@example.com"]
    assert first.sender == second.sender == again.sender
    assert first.message_id != again.message_id
    again.to.append(again.sender)  # a message's lists are its own
    assert len(compose(message("From: App <app@example.com>", "To: one@example.com")).to) == 1


@given(st.text().filter(lambda text: "=?" not in text))
def test_text_without_an_encoded_word_is_recorded_as_it_is(text: str) -> None:
    # What the stdlib's RFC 2047 decoder makes of it (compose_submitted skips the decoder for such text).
    text = text.encode("utf-8", "replace").decode("utf-8")  # header values come from bytes: no lone surrogates
    assert _decoded(text) == str(make_header(decode_header(text)))
