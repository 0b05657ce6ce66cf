"""A client's settings: where the API is, which token, how long to wait and how to retry.

Arguments win over the environment: `POSTHOUSE_BASE_URL`, `POSTHOUSE_SERVER_TOKEN`, `POSTHOUSE_ACCOUNT_TOKEN`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from posthouse.client.errors import ConfigurationError
from posthouse.client.retries import RetryPolicy

__all__ = [
    "ACCOUNT_TOKEN",
    "BASE_URL_ENV",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "SERVER_TOKEN",
    "ClientConfig",
    "TokenKind",
    "make_config",
]

VERSION = "0.1.0"
BASE_URL_ENV = "POSTHOUSE_BASE_URL"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3


@dataclass(frozen=True)
class TokenKind:
    """Which token a client carries: the header Postmark reads it from and the variable it may come from."""

    header: str
    env: str


SERVER_TOKEN = TokenKind("X-Postmark-Server-Token", "POSTHOUSE_SERVER_TOKEN")
ACCOUNT_TOKEN = TokenKind("X-Postmark-Account-Token", "POSTHOUSE_ACCOUNT_TOKEN")


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    headers: Mapping[str, str]
    timeout: httpx.Timeout
    retry: RetryPolicy


def make_config(
    kind: TokenKind,
    token: str | None,
    *,
    base_url: str | None,
    timeout: float | httpx.Timeout,
    retries: int | RetryPolicy,
    environ: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Settings from the arguments, then the environment; a ConfigurationError names what is missing."""
    env = os.environ if environ is None else environ
    token = token or env.get(kind.env)
    if not token:
        raise ConfigurationError(f"No token: pass one, or set {kind.env}.")
    base = base_url or env.get(BASE_URL_ENV)
    if not base:
        raise ConfigurationError(f"No base URL: pass base_url=, or set {BASE_URL_ENV} (e.g. http://127.0.0.1:8080).")
    try:
        url = urlsplit(base)
        usable = url.scheme in ("http", "https") and bool(url.hostname) and url.port != 0
    except ValueError:  # a port that is not a number
        usable = False
    if not usable:
        raise ConfigurationError(f"The base URL must be http:// or https:// with a host, not {base!r}.")
    if isinstance(retries, int):
        if retries < 0:
            raise ConfigurationError("retries must be 0 or more.")
        retries = RetryPolicy(retries=retries)
    if not isinstance(timeout, httpx.Timeout):
        if timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds.")
        timeout = httpx.Timeout(timeout)
    headers = {
        kind.header: token,
        "Accept": "application/json",
        "User-Agent": f"posthouse-python/{VERSION} ({platform.python_implementation()} {platform.python_version()})",
    }
    return ClientConfig(base_url=base.rstrip("/"), headers=headers, timeout=timeout, retry=retries)
