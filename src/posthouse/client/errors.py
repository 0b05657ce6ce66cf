"""Every exception the SDK raises, in one tree.

    PosthouseError                      the root: `except posthouse.PosthouseError` catches all of them
    ├── ConfigurationError              bad settings (no token, no base URL, unknown transport URL); also a
    │                                   ValueError; raised before any I/O and never retried
    ├── APIError                        the API answered with an error: .http_status, .error_code, .message,
    │   │                               .request_id
    │   ├── InvalidTokenError           401 / ErrorCode 10: missing, wrong or wrong kind of token
    │   ├── InvalidRequestError         422 and other 4xx: the request was refused as it is
    │   │   └── InactiveRecipientsError ErrorCode 406: .inactive_recipients, parsed from Postmark's text
    │   ├── RateLimitedError            429: .retry_after (seconds, from Retry-After, or None)
    │   ├── ServerError                 5xx: the server failed; retried
    │   └── UnexpectedResponseError     a 2xx whose body is not the JSON expected; never retried
    ├── NetworkError                    no answer: .request_sent is False only when the connection was never
    │   │                               made, so the server cannot have seen the request
    │   ├── ConnectionFailedError       refused, reset, closed before the answer, TLS failure
    │   └── RequestTimeoutError         no answer in time (connect, read, write or pool timeout)
    └── SMTPRefusedError                the SMTP server refused: .smtp_code, .smtp_message, .recipients

httpx's exceptions become these in one place (`posthouse.client.http.map_httpx_exceptions`), smtplib's in
`posthouse.client.smtp.map_smtplib_exceptions`, HTTP error answers in `posthouse.client.protocol.error_from_answer`.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "ConfigurationError",
    "ConnectionFailedError",
    "InactiveRecipientsError",
    "InvalidRequestError",
    "InvalidTokenError",
    "NetworkError",
    "PosthouseError",
    "RateLimitedError",
    "RequestTimeoutError",
    "SMTPRefusedError",
    "ServerError",
    "UnexpectedResponseError",
]


class PosthouseError(Exception):
    """The root of every error the SDK raises."""


class ConfigurationError(PosthouseError, ValueError):
    """A setting is missing or malformed; fix the configuration, retrying cannot help."""


class APIError(PosthouseError):
    """The API answered with an error status and (usually) Postmark's `{ErrorCode, Message}` body."""

    def __init__(
        self, message: str, *, error_code: int = 0, http_status: int = 0, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.http_status = http_status
        self.request_id = request_id

    def __str__(self) -> str:
        text = f"[{self.error_code}] {self.message} (HTTP {self.http_status})"
        return f"{text} [request_id={self.request_id}]" if self.request_id else text


class InvalidTokenError(APIError):
    """401 / ErrorCode 10: the token is missing, wrong, or of the wrong kind (server vs account)."""


class InvalidRequestError(APIError):
    """The request was refused as it is (422 and other 4xx); `.error_code` says why (docs/postmark-api.md §1.3)."""


class InactiveRecipientsError(InvalidRequestError):
    """ErrorCode 406: every recipient is suppressed; `.inactive_recipients` lists them (docs/postmark-api.md §2.6)."""

    def __init__(
        self,
        message: str,
        *,
        inactive_recipients: list[str],
        error_code: int = 406,
        http_status: int = 422,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, error_code=error_code, http_status=http_status, request_id=request_id)
        self.inactive_recipients = inactive_recipients


class RateLimitedError(APIError):
    """429: too many requests; `.retry_after` is the server's hint in seconds, when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        error_code: int = 0,
        http_status: int = 429,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, error_code=error_code, http_status=http_status, request_id=request_id)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed or is in maintenance; the request may be retried."""


class UnexpectedResponseError(APIError):
    """A success status whose body is not the JSON this call expects (a proxy page, a different API)."""


class NetworkError(PosthouseError):
    """No answer came back. `request_sent` is False only when no connection was ever made."""

    def __init__(self, message: str, *, request_sent: bool) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class ConnectionFailedError(NetworkError):
    """The connection could not be made, or broke before the whole answer arrived."""


class RequestTimeoutError(NetworkError):
    """No answer within the configured timeout."""


class SMTPRefusedError(PosthouseError):
    """The SMTP server refused the message, a recipient, or the login.

    `recipients` maps each refused recipient to its (code, reply) when recipients were refused; the
    whole message is then not sent to anyone (the transport sends all or nothing).
    """

    def __init__(self, smtp_code: int, smtp_message: str, recipients: dict[str, tuple[int, str]] | None = None) -> None:
        super().__init__(f"{smtp_code} {smtp_message}")
        self.smtp_code = smtp_code
        self.smtp_message = smtp_message
        self.recipients = recipients or {}
