"""Our DKIM signer (domain/dkim.py): RFC 6376 canonicalisation by table, and every signature checked by dkimpy,
an independent implementation, on plain and messy messages, RSA and Ed25519."""

from __future__ import annotations

import re
import time

import pytest
from dkim.canonicalization import Relaxed  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dkim_support import assert_dkimpy_verifies_all, dkimpy_verify, messy_messages, records_for
from posthouse.server.domain import dkim
from posthouse.server.domain.dkim_keys import DkimAlgorithm, DkimKey, generate_private_key

NOW = int(time.time())
KEYS = {a: DkimKey("example.com", f"ph-{a.value[:3]}", a, generate_private_key(a)) for a in DkimAlgorithm}
RSA, ED25519 = KEYS[DkimAlgorithm.RSA_SHA256], KEYS[DkimAlgorithm.ED25519_SHA256]
RECORDS = records_for(RSA, ED25519)
MESSAGE = (b"From: Ann <ann@example.com>\r\nTo: bob@example.net\r\nSubject: Hello\r\n"
           b"Date: Tue, 01 Jan 2030 00:00:00 +0000\r\nMessage-ID: <1@example.com>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nX-Mailer: test\r\n\r\nHello Bob.\r\n")


def tags(message: bytes, index: int = 0) -> dict[str, str]:
    """The tags of the `index`-th DKIM-Signature, whitespace removed."""
    fields, _ = dkim.split_message(message)
    signatures = [f for f in fields if f.lower().startswith(b"dkim-signature:")]
    value = signatures[index].split(b":", 1)[1].decode()
    return {k.strip(): re.sub(r"\s+", "", v) for k, _, v in (t.partition("=") for t in value.split(";") if t.strip())}


# --- Canonicalisation (RFC 6376 §3.4), by table -------------------------------------------------------------

@pytest.mark.parametrize(("field", "canonical"), [
    (b"A: X", b"a:X\r\n"),  # RFC 6376 §3.4.5's example
    (b"B : Y\t\r\n\tZ  ", b"b:Y Z\r\n"),  # the same example: unfolded, runs of WSP one space, trimmed
    (b"Subject:   lots\t\t of   space   ", b"subject:lots of space\r\n"),
    (b"SUBJECT:", b"subject:\r\n"),
    (b"Subject \t: obsolete", b"subject:obsolete\r\n"),  # WSP before the colon goes too (RFC 5322 §4.5.x syntax)
    (b"To: a@example.com,\r\n  b@example.com,\r\n\tc@example.com",
     b"to:a@example.com, b@example.com, c@example.com\r\n"),
    ("Subject: caf\u00e9 \u2014 8-bit".encode(), "subject:caf\u00e9 \u2014 8-bit\r\n".encode()),
])
def test_relaxed_header_canonicalisation(field: bytes, canonical: bytes) -> None:
    assert dkim.relaxed_header(field) == canonical


@pytest.mark.parametrize(("body", "canonical"), [
    (b" C \r\nD \t E\r\n\r\n\r\n", b" C\r\nD E\r\n"),  # RFC 6376 §3.4.5's example
    (b"", b""),  # an empty body stays empty in relaxed (§3.4.4), unlike simple's single CRLF
    (b"\r\n\r\n\r\n", b""),  # only empty lines: empty
    (b" \t \r\n\t\r\n", b""),  # lines of whitespace only are empty lines once trailing WSP goes
    (b"text", b"text\r\n"),  # a last line without CRLF gets one
    (b"a  b\t\tc \r\n\r\nd\r\n", b"a b c\r\n\r\nd\r\n"),  # empty lines inside stay
    (b"\tindented\r\n", b" indented\r\n"),  # leading WSP becomes one space, is not removed
    ("8-bit caf\u00e9  \r\n".encode(), "8-bit caf\u00e9\r\n".encode()),
])
def test_relaxed_body_canonicalisation(body: bytes, canonical: bytes) -> None:
    assert dkim.relaxed_body(body) == canonical
    assert dkim.relaxed_body(body) == Relaxed.canonicalize_body(body)  # dkimpy's canonicalisation agrees


@pytest.mark.parametrize(("message", "fields", "body"), [
    (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", [b"A: 1", b"B: 2"], b"body\r\n"),
    (b"A: 1\r\n folded\r\n\tagain\r\nB: 2\r\n\r\n", [b"A: 1\r\n folded\r\n\tagain", b"B: 2"], b""),
    (b"A: 1\r\n", [b"A: 1"], b""),  # no empty line: all header
    (b"\r\nbody only\r\n", [], b"body only\r\n"),
    (b"A: 1\r\n\r\n\r\n", [b"A: 1"], b"\r\n"),
])
def test_a_message_splits_into_fields_and_body(message: bytes, fields: list[bytes], body: bytes) -> None:
    assert dkim.split_message(message) == (fields, body)


@pytest.mark.parametrize(("raw", "sent"), [
    (b"A: 1\nB: 2\n\nbody\n", b"A: 1\r\nB: 2\r\n\r\nbody\r\n"),
    (b"A: 1\r\n\r\nno final line end", b"A: 1\r\n\r\nno final line end\r\n"),
    (b"A: 1\r\n\r\nbare\rcr\r\n", b"A: 1\r\n\r\nbare\r\ncr\r\n"),
])
def test_line_endings_are_made_what_the_transport_sends(raw: bytes, sent: bytes) -> None:
    assert dkim.normalize_line_endings(raw) == sent
    signed = dkim.sign(raw, [RSA], timestamp=NOW)
    assert signed.endswith(sent)
    assert_dkimpy_verifies_all(signed, RECORDS)


# --- Signatures, verified by dkimpy -------------------------------------------------------------------------

@pytest.mark.parametrize("key", [RSA, ED25519], ids=lambda k: k.algorithm.value)
def test_a_signature_verifies_and_says_what_it_signed(key: DkimKey) -> None:
    signed = dkim.sign(MESSAGE, [key], timestamp=NOW)
    assert signed.startswith(b"DKIM-Signature: v=1; a=" + key.algorithm.value.encode())
    assert signed.endswith(MESSAGE)  # added at the top; nothing else changed
    assert_dkimpy_verifies_all(signed, RECORDS)
    found = tags(signed)
    assert found["c"] == "relaxed/relaxed" and found["d"] == "example.com" and found["s"] == key.selector
    assert found["t"] == str(NOW)
    assert "l" not in found and "x" not in found  # no body length: nothing may be appended under the signature
    # The recommended fields that are present, From once more than it appears; X-Mailer is not signed.
    assert found["h"] == "from:to:subject:date:message-id:mime-version:content-type:from"


def test_the_header_is_folded_within_78_columns() -> None:
    many = b"".join(f"Cc: person{i}@example.net\r\n".encode() for i in range(12))
    signed = dkim.sign(many + MESSAGE, [RSA], timestamp=NOW)
    header = signed[:signed.index(b"\r\nCc:")]
    lines = header.split(b"\r\n")
    assert len(lines) > 5 and all(len(line) <= dkim.MAX_LINE for line in lines)
    assert all(line.startswith(b" ") for line in lines[1:])  # continuation lines (folding whitespace)
    assert tags(signed)["h"].split(":").count("cc") == 12  # each instance of a repeated field is signed
    assert_dkimpy_verifies_all(signed, RECORDS)


def test_two_keys_make_two_signatures_that_both_verify() -> None:
    signed = dkim.sign(MESSAGE, [RSA, ED25519], timestamp=NOW)
    assert [tags(signed, 0)["a"], tags(signed, 1)["a"]] == ["rsa-sha256", "ed25519-sha256"]
    assert_dkimpy_verifies_all(signed, RECORDS)


def test_no_key_no_signature() -> None:
    assert dkim.sign(MESSAGE, [], timestamp=NOW) == MESSAGE


@pytest.mark.parametrize("key", [RSA, ED25519], ids=lambda k: k.algorithm.value)
def test_what_relays_do_to_whitespace_keeps_it_valid_and_real_changes_break_it(key: DkimKey) -> None:
    signed = dkim.sign(MESSAGE, [key], timestamp=NOW)
    refolded = signed.replace(b"Subject: Hello", b"Subject:   \r\n\tHello  ").replace(b"Hello Bob.", b"Hello  Bob.\t")
    assert dkimpy_verify(refolded, RECORDS).ok  # relaxed canonicalisation survives re-folding
    for changed in (signed.replace(b"Hello Bob.", b"Hello Rob."),  # the body
                    signed.replace(b"Subject: Hello", b"Subject: Hullo"),  # a signed field
                    signed + b"appended\r\n",  # content appended (there is no l=)
                    signed.replace(b"Message-ID: <1@", b"Message-ID: <2@")):
        assert not dkimpy_verify(changed, RECORDS).ok


def test_a_from_field_added_later_breaks_the_signature() -> None:
    """From is oversigned: a second From, wherever it is put, is a field the signature said was absent."""
    signed = dkim.sign(MESSAGE, [RSA], timestamp=NOW)
    header_end = signed.index(b"\r\n\r\n") + 2
    below = signed[:header_end] + b"From: Mallory <mallory@example.org>\r\n" + signed[header_end:]
    above = b"From: Mallory <mallory@example.org>\r\n" + signed
    for forged in (below, above):
        assert not dkimpy_verify(forged, RECORDS).ok
    # Unrelated fields may be added on the way (a relay's Received:) without harm.
    assert dkimpy_verify(b"Received: from relay.example.net\r\n" + signed, RECORDS).ok


def test_keys_that_cannot_sign_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="not a rsa-sha256 key"):
        dkim.sign(MESSAGE, [DkimKey("example.com", "s", DkimAlgorithm.RSA_SHA256, ED25519.private_key_pem)],
                  timestamp=NOW)
    with pytest.raises(ValueError, match="not an unencrypted PEM"):
        dkim.algorithm_of(b"-----BEGIN PRIVATE KEY-----\r\nnonsense\r\n-----END PRIVATE KEY-----\r\n")
    for domain, selector in (("b\u00fccher.example", "s"), ("example.com", "a;b"), ("example.com", "")):
        with pytest.raises(ValueError, match="cannot go in a signature"):
            dkim.sign(MESSAGE, [DkimKey(domain, selector, DkimAlgorithm.ED25519_SHA256, ED25519.private_key_pem)],
                      timestamp=NOW)
    assert dkim.algorithm_of(RSA.private_key_pem) is DkimAlgorithm.RSA_SHA256
    assert dkim.algorithm_of(ED25519.private_key_pem) is DkimAlgorithm.ED25519_SHA256


# --- Messy messages (hypothesis), each signature checked by dkimpy ------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messy_messages(), algorithm=st.sampled_from(list(DkimAlgorithm)))
def test_messy_messages_sign_and_verify(message: bytes, algorithm: DkimAlgorithm) -> None:
    signed = dkim.sign(message, [KEYS[algorithm]], timestamp=NOW)
    assert signed.endswith(dkim.normalize_line_endings(message))
    assert_dkimpy_verifies_all(signed, RECORDS)
    header = signed[:signed.index(b"\r\n" + message[:4])]
    assert all(len(line) <= dkim.MAX_LINE for line in header.split(b"\r\n"))
    _, body = dkim.split_message(dkim.normalize_line_endings(message))  # as it goes out: the last line ended
    assert dkim.relaxed_body(body) == Relaxed.canonicalize_body(body)


@pytest.mark.parametrize("body", [b"", b"\r\n", b"\r\n\r\n", b"\r\n" * 50, b" \r\n", b"\t\r\n  \r\n"])
@pytest.mark.parametrize("key", [RSA, ED25519], ids=lambda k: k.algorithm.value)
def test_empty_and_crlf_only_bodies(body: bytes, key: DkimKey) -> None:
    signed = dkim.sign(b"From: a@example.com\r\nSubject: empty\r\n\r\n" + body, [key], timestamp=NOW)
    assert_dkimpy_verifies_all(signed, RECORDS)
    assert tags(signed)["bh"] == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # SHA-256 of nothing
