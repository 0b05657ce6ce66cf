"""The SDK's public surface, pinned: a name added or removed here is a decision, not an accident."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import posthouse
import posthouse.sync

PUBLIC = [
    "APIError",
    "APITransport",
    "AccountClient",
    "ArchivedStream",
    "Attachment",
    "ConfigurationError",
    "ConnectionFailedError",
    "Email",
    "EmailAddress",
    "Header",
    "InactiveRecipientsError",
    "InvalidRequestError",
    "InvalidTokenError",
    "MemoryTransport",
    "MessageEvent",
    "MessageStream",
    "MessageStreamList",
    "MessageStreamRequest",
    "NetworkError",
    "OutboundMessage",
    "OutboundMessageDetails",
    "OutboundMessageList",
    "PosthouseError",
    "RateLimitedError",
    "RequestTimeoutError",
    "RetryPolicy",
    "SMTPRefusedError",
    "SMTPTransport",
    "SendResponse",
    "Server",
    "ServerClient",
    "ServerError",
    "ServerList",
    "ServerRequest",
    "SubscriptionManagementConfiguration",
    "SyncAccountClient",
    "SyncServerClient",
    "Transport",
    "UnexpectedResponseError",
    "__version__",
    "encode_attachment",
    "sync",
    "transport_from_url",
]


def test_public_names() -> None:
    assert posthouse.__all__ == PUBLIC
    public = {name for name in dir(posthouse) if not name.startswith("_")}
    submodules = {"client", "wire", "server", "django"}  # attributes once imported, by the tests among others
    assert public - submodules == set(PUBLIC) - {"__version__"}


def test_every_public_name_is_defined() -> None:
    for name in PUBLIC:
        assert getattr(posthouse, name) is not None, name


def test_the_sync_namespace() -> None:
    assert posthouse.sync.__all__ == ["AccountClient", "ServerClient"]
    assert posthouse.sync.ServerClient is posthouse.SyncServerClient
    assert posthouse.sync.AccountClient is posthouse.SyncAccountClient


def test_the_error_tree() -> None:
    tree = {
        posthouse.ConfigurationError: posthouse.PosthouseError,
        posthouse.APIError: posthouse.PosthouseError,
        posthouse.InvalidTokenError: posthouse.APIError,
        posthouse.InvalidRequestError: posthouse.APIError,
        posthouse.InactiveRecipientsError: posthouse.InvalidRequestError,
        posthouse.RateLimitedError: posthouse.APIError,
        posthouse.ServerError: posthouse.APIError,
        posthouse.UnexpectedResponseError: posthouse.APIError,
        posthouse.NetworkError: posthouse.PosthouseError,
        posthouse.ConnectionFailedError: posthouse.NetworkError,
        posthouse.RequestTimeoutError: posthouse.NetworkError,
        posthouse.SMTPRefusedError: posthouse.PosthouseError,
    }
    for error, parent in tree.items():
        assert error.__bases__[0] is parent, error
    assert issubclass(posthouse.ConfigurationError, ValueError)
    assert issubclass(posthouse.Email, posthouse.wire.EmailRequest)


def test_importing_the_sdk_imports_neither_the_server_nor_django() -> None:
    code = (
        "import sys, posthouse, posthouse.sync\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('posthouse.server', 'django', 'starlette',"
        " 'asyncpg', 'uvicorn', 'aiosmtpd')))\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_package_is_typed() -> None:
    assert (Path(posthouse.__file__).parent / "py.typed").is_file()
