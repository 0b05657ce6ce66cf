"""DKIM key pairs: the TXT record carries the public half of the private key, for both algorithms."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from posthouse.server.domain.dkim_keys import DkimAlgorithm, DkimKey, generate_private_key, txt_record


def test_an_rsa_key_is_2048_bits_and_its_record_verifies_its_signatures() -> None:
    pem = generate_private_key(DkimAlgorithm.RSA_SHA256)
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    record = txt_record(DkimAlgorithm.RSA_SHA256, pem)
    assert record.startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(base64.b64decode(record.split("p=", 1)[1]))
    assert isinstance(public, rsa.RSAPublicKey)
    signature = private.sign(b"data", padding.PKCS1v15(), hashes.SHA256())
    public.verify(signature, b"data", padding.PKCS1v15(), hashes.SHA256())


def test_an_ed25519_record_is_the_raw_32_byte_key() -> None:
    pem = generate_private_key(DkimAlgorithm.ED25519_SHA256)
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    record = txt_record(DkimAlgorithm.ED25519_SHA256, pem)
    assert record.startswith("v=DKIM1; k=ed25519; p=")
    raw = base64.b64decode(record.split("p=", 1)[1])
    assert len(raw) == 32
    ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(private.sign(b"data"), b"data")


def test_a_key_of_the_other_algorithm_is_refused_and_names_are_where_dns_looks() -> None:
    with pytest.raises(ValueError, match="not an RSA"):
        txt_record(DkimAlgorithm.RSA_SHA256, generate_private_key(DkimAlgorithm.ED25519_SHA256))
    key = DkimKey("example.com", "ph2026", DkimAlgorithm.RSA_SHA256, b"")
    assert key.dns_name == "ph2026._domainkey.example.com"
