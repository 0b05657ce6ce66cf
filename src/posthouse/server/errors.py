"""The server's exception tree: every error Posthouse raises on purpose is one of these.

    PosthouseError
    ├── ConfigurationError        bad settings, bad URL, unreachable database at start: fatal, never swallowed
    └── OperationalError          something failed while serving; the caller retries later
        ├── StoreError            the database failed (HTTP 5xx, SMTP 451, worker requeue)
        │   └── StoreFullError    the database refused a write for lack of space
        ├── DeliveryError         a transport could not talk to its peer at all (connection, TLS, timeout)
        │   └── SMTPAuthenticationError   the relay refused our AUTH (delivery.smtp_client; carries the reply)
        ├── ApiError              a request Postmark's API would refuse: carries error_code and http_status
        │   ├── AuthenticationError   ErrorCode 10, HTTP 401
        │   ├── NotFoundError         an entity that does not exist (error_code given by the caller)
        │   ├── RateLimitedError      a rate limit: HTTP 429 (SMTP 451 4.7.1), with the seconds to wait
        │   └── SenderNotAllowedError the From address is not one the sender policy allows (400/401; SMTP 554 5.7.1)
        └── DashboardError        the dashboard or `posthouse users` refused what was asked (a bad email, a taken one)
            └── SignInError       a dashboard sign-in refused: wrong credentials, or too many failures (retry_after)

A remote SMTP 4xx/5xx reply is not an exception: it is a value (`delivery.smtp_client.Reply`).
"""

from __future__ import annotations


class PosthouseError(Exception):
    """Root of every error Posthouse raises on purpose."""


class ConfigurationError(PosthouseError):
    """The settings cannot work: reported as one line at start, never retried."""


class OperationalError(PosthouseError):
    """A failure while serving; what was being done can be retried."""


class StoreError(OperationalError):
    """The database failed; nothing was acknowledged."""


class StoreFullError(StoreError):
    """The database ran out of space; nothing was acknowledged."""


class DeliveryError(OperationalError):
    """A transport could not complete a conversation with its peer (no reply to classify)."""


class ApiError(OperationalError):
    """A request refused with Postmark's `{ErrorCode, Message}` and an HTTP status."""

    def __init__(self, error_code: int, message: str, http_status: int = 422) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.http_status = http_status


class AuthenticationError(ApiError):
    """No valid token of the kind the endpoint needs (Postmark ErrorCode 10)."""

    def __init__(self, message: str = "Request does not contain a valid Server token.") -> None:
        super().__init__(10, message, 401)


class NotFoundError(ApiError):
    """The entity named in the request does not exist."""

    def __init__(self, error_code: int, message: str, http_status: int = 422) -> None:
        super().__init__(error_code, message, http_status)


class RateLimitedError(ApiError):
    """Past a rate limit (a server's sending rate, a token's request rate): HTTP 429 with ErrorCode 429 and
    `Retry-After`, SMTP `451 4.7.1`. Nothing was done, so the same request may be made again after
    `retry_after` seconds (a whole number, at least 1)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, message, 429)
        self.retry_after = max(1, retry_after)


class SenderNotAllowedError(ApiError):
    """The `sender_policy` setting refuses this From address: ErrorCode 400 (no signature, no verified domain)
    or 401 (a signature not confirmed yet), HTTP 422; over SMTP `554 5.7.1` (services/submission.py)."""


class DashboardError(OperationalError):
    """The dashboard, or `posthouse users`, refused a request; the message says why, for the operator."""


class SignInError(DashboardError):
    """A sign-in refused. `retry_after` (seconds) is set when it was refused for too many failures, before
    the credentials were even checked."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
