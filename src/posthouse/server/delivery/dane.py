"""DANE for SMTP (RFC 7672): an MX host's certificate chain checked against its TLSA records.

Only records from a DNSSEC-validated answer reach this module (`delivery/mx.py` asks for them only
when the MX answer and the host's address answer were validated too, RFC 7672 §2.2). What is checked:

- DANE-EE(3): the leaf certificate (selector 0) or its public key (selector 1) matches, exactly or by
  SHA-256/SHA-512; names and dates are not checked (RFC 7672 §3.1.1);
- DANE-TA(2): a certificate the server sent matches, and the leaf chains to it, is in date and names
  the MX host (RFC 7672 §3.1.2, §3.2.2), checked with `cryptography`'s X.509 path validation;
- PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1.3), as are unknown selectors and
  matching types; a host whose records are all unusable is delivered to as if it had none.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import verification

from posthouse.server.delivery.dns import TlsaRecord

__all__ = ["check_chain", "peer_chain", "usable_records"]

DANE_TA = 2
DANE_EE = 3
# CPython's private `_ssl.Certificate.public_bytes` format for DER (what 3.11's private chain method returns).
_ENCODING_DER: int = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)


def usable_records(records: Sequence[TlsaRecord]) -> tuple[TlsaRecord, ...]:
    return tuple(r for r in records
                 if r.usage in (DANE_TA, DANE_EE) and r.selector in (0, 1) and r.matching_type in (0, 1, 2))


def _association(certificate: x509.Certificate, selector: int, matching_type: int) -> bytes:
    """RFC 6698 §2.1.2-2.1.3: the full certificate or its SubjectPublicKeyInfo, as is or hashed."""
    if selector == 0:
        data = certificate.public_bytes(Encoding.DER)
    else:
        data = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if matching_type == 1:
        return hashlib.sha256(data).digest()
    if matching_type == 2:
        return hashlib.sha512(data).digest()
    return data


def _matches(record: TlsaRecord, certificate: x509.Certificate) -> bool:
    return _association(certificate, record.selector, record.matching_type) == record.data


def check_chain(records: Sequence[TlsaRecord], chain: Sequence[bytes], host: str,
                now: datetime.datetime | None = None) -> str | None:
    """None when the chain (DER, leaf first, as the server sent it) satisfies a usable record; else why not."""
    usable = usable_records(records)
    if not usable:
        return "no usable TLSA record"
    if not chain:
        return "the server sent no certificate"
    try:
        certificates = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        return f"unreadable certificate: {exc}"
    leaf = certificates[0]
    if any(r.usage == DANE_EE and _matches(r, leaf) for r in usable):
        return None
    anchors = [c for c in certificates[1:] if any(r.usage == DANE_TA and _matches(r, c) for r in usable)]
    if not anchors:
        return "no certificate of the chain matches a TLSA record"
    try:
        verifier = (verification.PolicyBuilder().store(verification.Store(anchors))
                    .time(now or datetime.datetime.now(datetime.UTC))
                    .build_server_verifier(x509.DNSName(host)))
        verifier.verify(leaf, certificates[1:])
    except (verification.VerificationError, ValueError) as exc:
        return f"the chain does not validate to the TLSA trust anchor for {host}: {exc}"
    return None


def peer_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The certificates the peer sent (DER, leaf first), without verifying them.

    `SSLObject.get_unverified_chain()` is public from Python 3.13; on 3.11-3.12 the same method exists
    on the underlying `_ssl` object (CPython gh-78467). Failing both, the leaf alone (DANE-EE still works).
    """
    method: Any = getattr(ssl_object, "get_unverified_chain", None)
    if method is None:
        method = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if method is not None:
        chain = method() or []
        return [c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER) for c in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []
