"""DKIM key pairs: made for a sending domain, kept as PEM, published as a DNS TXT record (RFC 6376 §3.6.1).

Two algorithms, as providers recommend signing with: `rsa-sha256` (RSA-2048, what every verifier
knows) and `ed25519-sha256` (RFC 8463, small and fast; not every verifier knows it yet, so a domain
that wants it usually publishes both). `cryptography` makes the keys; this module knows no I/O.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


class DkimAlgorithm(StrEnum):
    RSA_SHA256 = "rsa-sha256"
    ED25519_SHA256 = "ed25519-sha256"


@dataclass(frozen=True, slots=True)
class DkimKey:
    """What signing needs: the `d=` domain, the `s=` selector, the algorithm and the private key (PKCS#8 PEM)."""

    domain: str
    selector: str
    algorithm: DkimAlgorithm
    private_key_pem: bytes

    @property
    def dns_name(self) -> str:
        """Where the public key is published: `<selector>._domainkey.<domain>`."""
        return f"{self.selector}._domainkey.{self.domain}"


def generate_private_key(algorithm: DkimAlgorithm, rsa_bits: int = 2048) -> bytes:
    """A new private key as unencrypted PKCS#8 PEM."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm is DkimAlgorithm.RSA_SHA256:
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_value(algorithm: DkimAlgorithm, private_key_pem: bytes) -> str:
    """The `p=` value: base64 of the SubjectPublicKeyInfo DER for RSA (RFC 6376 §3.6.1), of the raw
    32-byte public key for Ed25519 (RFC 8463 §4.2)."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if algorithm is DkimAlgorithm.RSA_SHA256:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        der = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(der).decode("ascii")


def txt_record(algorithm: DkimAlgorithm, private_key_pem: bytes) -> str:
    """The TXT record to publish at the key's `dns_name`."""
    kind = "rsa" if algorithm is DkimAlgorithm.RSA_SHA256 else "ed25519"
    return f"v=DKIM1; k={kind}; p={public_key_value(algorithm, private_key_pem)}"
