"""Posthouse: self-hosted transactional email. The SDK's public names live here; the server is `posthouse.server`.

    async with posthouse.ServerClient(token, base_url="http://127.0.0.1:8080") as client:
        response = await client.outbound.send(posthouse.Email(sender=..., to=..., subject=..., text_body=...))

`posthouse.sync` holds the same clients without `await`; `posthouse.django` the Django email backend
(imported only when named, like Django itself).
"""

from posthouse import sync
from posthouse.client.clients import AccountClient, ServerClient, SyncAccountClient, SyncServerClient
from posthouse.client.config import VERSION as __version__
from posthouse.client.errors import (
    APIError,
    ConfigurationError,
    ConnectionFailedError,
    InactiveRecipientsError,
    InvalidRequestError,
    InvalidTokenError,
    NetworkError,
    PosthouseError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    SMTPRefusedError,
    UnexpectedResponseError,
)
from posthouse.client.models import Email, encode_attachment
from posthouse.client.retries import RetryPolicy
from posthouse.client.smtp import SMTPTransport
from posthouse.client.transports import APITransport, MemoryTransport, Transport, transport_from_url
from posthouse.wire import (
    ArchivedStream,
    Attachment,
    EmailAddress,
    Header,
    MessageEvent,
    MessageStream,
    MessageStreamList,
    MessageStreamRequest,
    OutboundMessage,
    OutboundMessageDetails,
    OutboundMessageList,
    SendResponse,
    Server,
    ServerList,
    ServerRequest,
    SubscriptionManagementConfiguration,
)

__all__ = [
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
