"""Standard Webhooks signing, checked against the `standardwebhooks` package as the oracle."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from posthouse.server.webhooks.signing import SECRET_PREFIX, new_secret, sign, signature_headers

BODY = b'{"RecordType":"Delivery","Recipient":"john@example.com","Details":"caf\xc3\xa9"}'
# The secret from the Standard Webhooks spec's own examples.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_new_secret_has_the_prefix_and_24_to_32_random_bytes() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith(SECRET_PREFIX)
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        assert 24 <= len(key) <= 32
        Webhook(secret)  # the reference accepts it


def test_the_spec_example_signature() -> None:
    # https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    body = b'{"test": 2432232314}'
    assert (
        sign(SPEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_headers_verify_with_standardwebhooks() -> None:
    secret = new_secret()
    now = int(time.time())
    headers = signature_headers(secret, "evt_0f1e2d", now, BODY)
    assert headers.keys() == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "evt_0f1e2d"
    assert headers["webhook-timestamp"] == str(now)
    assert Webhook(secret).verify(BODY, headers) == {
        "RecordType": "Delivery",
        "Recipient": "john@example.com",
        "Details": "café",
    }


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("secret", new_secret()),
        ("body", BODY.replace(b"john", b"jane")),
        ("webhook-id", "evt_other"),
        ("webhook-timestamp", "1"),
    ],
)
def test_verification_fails_when_anything_differs(change: str, value: object) -> None:
    secret = new_secret()
    now = int(time.time())
    headers = signature_headers(secret, "evt_0f1e2d", now, BODY)
    body = BODY
    if change == "secret":
        secret = str(value)
    elif change == "body":
        body = bytes(value)  # type: ignore[call-overload]
    else:
        headers[change] = str(value)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_secret_without_prefix_or_padding_is_the_same_key() -> None:
    key = base64.b64encode(b"k" * 25).decode()  # 25 bytes: base64 with padding
    assert key.endswith("=")
    expected = sign(SECRET_PREFIX + key, "evt", 1, BODY)
    assert sign(key, "evt", 1, BODY) == expected
    assert sign(SECRET_PREFIX + key.rstrip("="), "evt", 1, BODY) == expected


@pytest.mark.parametrize("secret", ["whsec_", "", "whsec_not*base64!", "whsec_abc$"])
def test_unusable_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        sign(secret, "evt", 1, BODY)


@given(
    key=st.binary(min_size=24, max_size=64),
    msg_id=st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=40),
    timestamp=st.integers(min_value=0, max_value=2**33),
    body=st.text(max_size=300),
)
def test_byte_identical_to_the_reference(key: bytes, msg_id: str, timestamp: int, body: str) -> None:
    secret = SECRET_PREFIX + base64.b64encode(key).decode()
    reference = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)
    assert sign(secret, msg_id, timestamp, body.encode()) == reference
