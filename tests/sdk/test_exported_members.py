"""The SDK's public surface, pinned: a name added or removed here is a decision, not an accident."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import posthouse
import posthouse.sync

PUBLIC = [
    "APIError",
    "APITransport",
    "AccountClient",
    "AgentDetails",
    "ArchivedStream",
    "Attachment",
    "Bounce",
    "BounceActivation",
    "BounceCounts",
    "BounceDay",
    "BounceList",
    "BounceTypeCount",
    "BulkAccepted",
    "BulkList",
    "BulkMessage",
    "BulkRequest",
    "BulkStatus",
    "ClickCounts",
    "ClickDay",
    "ClickEvent",
    "ClickList",
    "ClickLocationCounts",
    "ClickLocationDay",
    "ClickPlatformCounts",
    "ClickPlatformDay",
    "ConfigurationError",
    "ConnectionFailedError",
    "ContentTrigger",
    "DeliveryStats",
    "DkimRecord",
    "DomainDetails",
    "DomainList",
    "DomainRequest",
    "DomainSummary",
    "Email",
    "EmailAddress",
    "EnabledTrigger",
    "Geo",
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
    "OpenCounts",
    "OpenDay",
    "OpenEvent",
    "OpenList",
    "OpenTrigger",
    "OutboundMessage",
    "OutboundMessageDetails",
    "OutboundMessageList",
    "OutboundOverview",
    "PlatformCounts",
    "PlatformDay",
    "PosthouseError",
    "PushedTemplate",
    "RateLimitedError",
    "RequestTimeoutError",
    "RetryPolicy",
    "SMTPRefusedError",
    "SMTPTransport",
    "ScheduleChange",
    "SendResponse",
    "SenderSignatureDetails",
    "SenderSignatureList",
    "SenderSignatureRenewal",
    "SenderSignatureRequest",
    "SenderSignatureSummary",
    "SentCounts",
    "SentDay",
    "Server",
    "ServerClient",
    "ServerError",
    "ServerList",
    "ServerRequest",
    "SpamCounts",
    "SpamDay",
    "SubscriptionManagementConfiguration",
    "SuppressionDump",
    "SuppressionEntry",
    "SuppressionResult",
    "SuppressionResults",
    "SyncAccountClient",
    "SyncServerClient",
    "Template",
    "TemplateContentValidation",
    "TemplateEmail",
    "TemplateList",
    "TemplatePushResponse",
    "TemplateRequest",
    "TemplateSummary",
    "TemplateValidationRequest",
    "TemplateValidationResponse",
    "TrackedCounts",
    "TrackedDay",
    "Transport",
    "UnexpectedResponseError",
    "UsageCounts",
    "UsageDay",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryList",
    "WebhookHttpAuth",
    "WebhookList",
    "WebhookRequest",
    "WebhookTriggers",
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
    assert issubclass(posthouse.TemplateEmail, posthouse.wire.TemplateEmailRequest)


RESOURCES = {
    "ServerClient": {
        "outbound": [
            "cancel", "clicks", "dump", "get", "iterate", "list", "message_clicks", "message_opens", "opens",
            "reschedule", "send", "send_batch", "send_batch_with_templates", "send_with_template",
        ],
        "bulk": ["get", "list", "send"],
        "templates": ["create", "delete", "edit", "get", "list", "validate"],
        "bounces": ["activate", "delivery_stats", "dump", "get", "iterate", "list", "tags"],
        "suppressions": ["create", "delete", "dump"],
        "webhooks": ["create", "delete", "deliveries", "edit", "get", "list", "redeliver"],
        "streams": ["archive", "create", "edit", "get", "list", "unarchive"],
        "server": ["edit", "get"],
        "stats": [
            "bounces", "browser_families", "click_locations", "click_platforms", "clicks", "email_clients",
            "open_platforms", "opens", "overview", "read_times", "sends", "spam", "tracked",
        ],
    },
    "AccountClient": {
        "servers": ["create", "delete", "edit", "get", "list"], "templates": ["push"],
        "domains": ["create", "delete", "edit", "get", "list", "rotate_dkim", "verify_dkim", "verify_return_path",
                    "verify_spf"],
        "senders": ["create", "delete", "edit", "get", "list", "request_new_dkim", "resend", "verify_spf"],
    },
}


def test_the_resources_of_each_client() -> None:
    """Each client's resources and their methods, the same on the async and the sync client."""
    for name, resources in RESOURCES.items():
        async_client = getattr(posthouse, name)("t", base_url="http://h.test")
        sync_client = getattr(posthouse.sync, name)("t", base_url="http://h.test")
        try:
            for client in (async_client, sync_client):
                found = {
                    attribute: sorted(m for m in dir(value) if not m.startswith("_"))
                    for attribute, value in vars(client).items()
                    if not attribute.startswith("_")
                }
                assert found == resources, (name, client)
        finally:
            sync_client.close()
            asyncio.run(async_client.aclose())


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
