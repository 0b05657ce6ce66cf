"""Our DKIM signatures checked by OpenDKIM (`opendkim-testmsg`, Debian's opendkim-tools), which fetches the
public key from DNS: a dnslib server on loopback serves the test domains' key records. And keys made by
OpenDKIM's own `opendkim-genkey`, read from a key folder (`dkim_key_dir`), sign mail both verifiers accept."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dkim_support import (
    OpenDkim,
    assert_dkimpy_verifies_all,
    messy_messages,
    opendkim_dns,
    records_for,
    require_opendkim,
)
from posthouse.server.domain import dkim
from posthouse.server.domain.addresses import Address
from posthouse.server.domain.dkim_keys import DkimAlgorithm, DkimKey, generate_private_key
from posthouse.server.domain.mime import Attachment, MessageContent, build_message
from posthouse.server.errors import ConfigurationError
from posthouse.server.services.dkim_keys import StaticSigningKeys

KEYS = {a: DkimKey("mail.example.com", f"ph{a.value[:3]}", a, generate_private_key(a)) for a in DkimAlgorithm}
UNPUBLISHED = DkimKey("mail.example.com", "nowhere", DkimAlgorithm.RSA_SHA256,
                      generate_private_key(DkimAlgorithm.RSA_SHA256))
DATE = b"Date: Tue, 01 Jan 2030 00:00:00 +0000\r\n"  # OpenDKIM refuses a message without one (RFC 5322 §3.6)


@pytest.fixture(scope="module")
def opendkim() -> Iterator[OpenDkim]:
    require_opendkim()
    with opendkim_dns() as verifier:
        verifier.dns.publish(records_for(*KEYS.values()))
        yield verifier


def now() -> int:
    return int(time.time())


def built_message() -> bytes:
    """A message as Posthouse builds one: text, HTML, an attachment, encoded words, list headers."""
    return build_message(MessageContent(
        message_id="<0f3c@mail.example.com>", date=datetime(2030, 1, 1, tzinfo=UTC),
        sender=Address("orders@mail.example.com", "Zoë's Shop"), to=[Address("ann@example.net", "Ann")],
        cc=[Address("bob@example.net")], reply_to=[Address("help@mail.example.com")],
        subject="Votre commande — n° 48213 est partie", text_body="Bonjour Ann,\n\n  Merci.  \n\n\n",
        html_body="<p>Bonjour <b>Ann</b>,</p>\n<p>Merci.</p>\n",
        headers=[("List-Unsubscribe", "<https://mail.example.com/u/1>"),
                 ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"), ("Feedback-ID", "48213:orders:shop")],
        attachments=[Attachment("facture.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 20, "application/pdf")]))


MESSY = (b"From: Ann <ann@mail.example.com>\r\n" + DATE +
         b"To:   bob@example.net,\r\n\t carol@example.net   \r\nSubject:\tlots   of\t\tspace \t\r\n"
         b"Subject-Like: x\r\nX-Trailing: value \t \r\n\r\n"
         b"  leading and trailing  \t\r\n\r\n8-bit: caf\xc3\xa9 \xff\xfe\r\n\r\n\r\n \r\n")


@pytest.mark.parametrize("algorithm", list(DkimAlgorithm))
@pytest.mark.parametrize("message", [built_message(), MESSY, b"From: a@mail.example.com\r\n" + DATE + b"\r\n",
                                     b"From: a@mail.example.com\r\n" + DATE + b"\r\n\r\n\r\n\r\n"],
                         ids=["built", "messy", "empty-body", "crlf-only-body"])
def test_opendkim_verifies_our_signatures(opendkim: OpenDkim, message: bytes, algorithm: DkimAlgorithm) -> None:
    signed = dkim.sign(message, [KEYS[algorithm]], timestamp=now())
    result = opendkim.verify(signed)
    assert result.returncode == 0, result.stderr.decode()
    assert_dkimpy_verifies_all(signed, records_for(*KEYS.values()))


@pytest.mark.parametrize("algorithm", list(DkimAlgorithm))
def test_opendkim_refuses_what_was_changed_or_cannot_be_checked(opendkim: OpenDkim, algorithm: DkimAlgorithm) -> None:
    message = built_message()
    signed = dkim.sign(message, [KEYS[algorithm]], timestamp=now())
    body_changed = signed.replace(b"Merci.", b"Merde.", 1)
    header_changed = signed.replace(b"Cc: bob@", b"Cc: eve@")
    from_added = b"From: eve@example.org\r\n" + signed
    for forged in (body_changed, header_changed):
        result = opendkim.verify(forged)
        assert result.returncode != 0 and b"Bad signature" in result.stderr, result.stderr
    # A second From: OpenDKIM stops at it (RFC 5322 allows one); the oversigned From would fail it anyway.
    assert opendkim.verify(from_added).returncode != 0
    # The key is looked up in DNS: a selector nobody published cannot verify.
    unpublished = opendkim.verify(dkim.sign(message, [UNPUBLISHED], timestamp=now()))
    assert unpublished.returncode != 0 and b"Key retrieval failed" in unpublished.stderr, unpublished.stderr


def test_whitespace_before_the_colon_is_canonicalised_as_opendkim_does(opendkim: OpenDkim) -> None:
    """Obsolete syntax (RFC 5322 §4.5.x: WSP between field name and colon) is still one field named Subject
    (RFC 6376 §3.4.2 removes that WSP); OpenDKIM agrees."""
    message = b"From : ann@mail.example.com\r\n" + DATE + b"Subject  : old style\r\n\r\nbody\r\n"
    signed = dkim.sign(message, [KEYS[DkimAlgorithm.RSA_SHA256]], timestamp=now())
    assert b"h=from:date:subject:from;" in signed.replace(b"\r\n ", b"")
    result = opendkim.verify(signed)
    assert result.returncode == 0, result.stderr.decode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messy_messages(rfc5322_counts=True, obsolete_colon=True), algorithm=st.sampled_from(list(DkimAlgorithm)))
def test_opendkim_verifies_messy_messages(opendkim: OpenDkim, message: bytes, algorithm: DkimAlgorithm) -> None:
    signed = dkim.sign(message, [KEYS[algorithm]], timestamp=now())
    result = opendkim.verify(signed)
    assert result.returncode == 0, (result.stderr.decode(), signed[:2000])


def genkey(folder: Path, domain: str, selector: str) -> str:
    """`opendkim-genkey` into `folder/domain`; the TXT record it says to publish."""
    target = folder / domain
    target.mkdir(parents=True)
    subprocess.run(["opendkim-genkey", "-D", str(target), "-d", domain, "-s", selector], check=True, timeout=60)
    zone = (target / f"{selector}.txt").read_text()
    return "".join(re.findall(r'"([^"]*)"', zone))


async def test_keys_made_by_opendkim_genkey_sign_mail_both_verifiers_accept(opendkim: OpenDkim, tmp_path: Path) -> None:
    records = {f"gen2030._domainkey.{domain}": genkey(tmp_path, domain, "gen2030")
               for domain in ("example.org", "news.example.org")}
    assert all("h=sha256" in record for record in records.values())  # genkey restricts the key to SHA-256
    (tmp_path / "example.org" / "gen2030.txt").unlink()  # only key files are read; the rest is ignored either way
    opendkim.dns.publish(records)
    keys = StaticSigningKeys.from_directory(tmp_path)
    found = list(await keys.for_domain("EXAMPLE.org"))
    assert [(k.domain, k.selector, k.algorithm) for k in found] == [
        ("example.org", "gen2030", DkimAlgorithm.RSA_SHA256)]
    assert list(await keys.for_domain("other.example")) == []
    message = b"From: ann@example.org\r\n" + DATE + b"Subject: from a genkey key\r\n\r\nHello.\r\n"
    signed = dkim.sign(message, found, timestamp=now())
    result = opendkim.verify(signed)
    assert result.returncode == 0, result.stderr.decode()
    assert_dkimpy_verifies_all(signed, records)


def test_a_key_folder_with_something_else_in_it_is_a_clear_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "example.org").mkdir()
    (tmp_path / "example.org" / "s1.private").write_text("not a key")
    with pytest.raises(ConfigurationError, match=r"s1\.private.*not an unencrypted PEM private key"):
        StaticSigningKeys.from_directory(tmp_path)
    with pytest.raises(ConfigurationError, match="is not a folder"):
        StaticSigningKeys.from_directory(tmp_path / "missing")
