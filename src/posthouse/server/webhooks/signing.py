"""Standard Webhooks signatures: the secret format, the `v1` HMAC-SHA256 signature and its three headers.

Postmark signs nothing (docs/postmark-api.md §7.2); we add the Standard Webhooks headers
(https://www.standardwebhooks.com, spec "Signature scheme") so receivers can check that a post came
from us and was not replayed. The `standardwebhooks` package is the oracle in the tests
(docs/architecture.md §6a): our output is byte-identical to its `Webhook.sign`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = ["SECRET_PREFIX", "new_secret", "sign", "signature_headers"]

# The spec prefixes symmetric secrets with "whsec_"; what follows is the base64 of the key bytes.
SECRET_PREFIX = "whsec_"  # noqa: S105 - a format marker, not a password
# The spec asks for keys of 24 to 64 random bytes; 32 is the size of an HMAC-SHA256 output.
_SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret: "whsec_" followed by the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded bytes after the optional "whsec_" prefix.

    Unpadded base64 is accepted, as the reference implementation does; anything else that is not
    base64, or decodes to nothing, is a configuration error (ValueError).
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret is not base64 after the whsec_ prefix") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: "v1," + base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")).

    The signed content is exactly the bytes sent (the spec signs the raw body, never a re-encoding);
    `timestamp` is whole seconds since the epoch, as sent in `webhook-timestamp`.
    """
    content = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one post.

    `msg_id` must stay the same across retries of one event (the spec's idempotency key) while
    `timestamp` is the time of each attempt: receivers reject timestamps outside their tolerance
    (five minutes in the reference implementation) to stop replays.
    """
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
