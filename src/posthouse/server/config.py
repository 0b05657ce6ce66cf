"""Settings: every field has a default, a one-line description, an environment variable and a TOML key.

Precedence, highest first: command-line flag, environment variable (`POSTHOUSE_<FIELD>`), the TOML
file named by `--config` / `POSTHOUSE_CONFIG`, the default. The field name is the TOML key and, upper-
cased with the prefix, the environment variable: `retry_schedule` ↔ `POSTHOUSE_RETRY_SCHEDULE`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from posthouse.server.errors import ConfigurationError

ENV_PREFIX = "POSTHOUSE_"
ROLES = ("api", "smtp", "worker", "tracking")
UNSAFE_SYNCHRONOUS = ("NORMAL", "OFF")  # below FULL: a power cut can lose commits already acknowledged
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_TRACKING_BASE_URL = re.compile(r"https?://[A-Za-z0-9.\[\]:-]+(?:/[A-Za-z0-9._~%:/-]*)?")


def parse_duration(text: str) -> float:
    """`"30s"`, `"2m"`, `"1h"`, `"5d"`, `"250ms"` or plain seconds → seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigurationError(f"invalid duration {text!r} (use e.g. 30s, 2m, 1h, 5d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_schedule(text: str) -> tuple[float, ...]:
    """A comma-separated list of durations; the last one repeats."""
    delays = tuple(parse_duration(part) for part in str(text).split(",") if part.strip())
    if not delays:
        raise ConfigurationError("the retry schedule needs at least one delay")
    return delays


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(text: str, setting: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ConfigurationError(f"invalid network {text.strip()!r} in {setting} (use CIDR, e.g. 10.0.0.0/8)") from None


def parse_hostport(text: str, *, what: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) → (host, port)."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(f"invalid {what} address {text!r} (expected HOST:PORT)")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True, slots=True)
class RelayTarget:
    """A smarthost parsed from `smtp://`, `smtp+starttls://` or `smtps://` URLs."""

    host: str
    port: int
    tls: str  # "none" | "starttls" | "implicit"
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> RelayTarget:
        parts = urlsplit(url)
        tls_by_scheme = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "implicit"}
        default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
        if parts.scheme not in tls_by_scheme or not parts.hostname:
            raise ConfigurationError(
                f"invalid relay URL {url!r} (use smtp://host:port, smtp+starttls://user:pass@host:587"
                " or smtps://user:pass@host:465)"
            )
        try:
            port = parts.port or default_port[parts.scheme]
        except ValueError:
            raise ConfigurationError(f"invalid port in relay URL {url!r}") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls_by_scheme[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def _setting(default: Any, description: str) -> Any:
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `posthouse serve` and the CLI read; see the module docstring for precedence."""

    http: str = _setting("127.0.0.1:8080", "HOST:PORT the HTTP API listens on")
    data_dir: str = _setting("./posthouse-data", "folder for the SQLite database and local state")
    database_url: str = _setting(
        "", "sqlite:///PATH or postgresql://…; empty means SQLite in the data dir"
    )
    delivery: str = _setting("sandbox", "sandbox (keep mail locally) or relay (send to a smarthost)")
    relay_url: str = _setting("", "smarthost URL for relay delivery: smtp://, smtp+starttls://, smtps://")
    retry_schedule: str = _setting(
        "30s,2m,10m,30m,1h,2h,4h", "delays between delivery attempts; the last one repeats"
    )
    max_message_age: str = _setting("5d", "give up (bounce) a message not delivered after this long")
    roles: str = _setting("api,smtp,worker,tracking",
                          "comma-separated roles this process runs: api, smtp, worker, tracking")
    smtp: str = _setting("127.0.0.1:2525", "SMTP submission listeners, comma-separated HOST:PORT (STARTTLS offered); "
                         "smtps://HOST:PORT for implicit TLS")
    smtp_hostname: str = _setting("", "name in the SMTP greeting; empty means this machine's FQDN")
    smtp_tls_cert: str = _setting("", "PEM certificate (chain) for SMTP TLS; empty: a self-signed one in the data dir")
    smtp_tls_key: str = _setting("", "PEM private key for smtp_tls_cert")
    smtp_max_message_size: int = _setting(10 * 1024 * 1024, "largest message accepted over SMTP, in bytes (SIZE)")
    smtp_max_recipients: int = _setting(50, "recipients per SMTP transaction at most (452 4.5.3 beyond)")
    smtp_auth_requires_tls: bool = _setting(True, "offer AUTH only after STARTTLS (or on implicit TLS), except to "
                                            "smtp_plaintext_auth_networks")
    smtp_plaintext_auth_networks: str = _setting("127.0.0.1/32,::1/128", "clients that may AUTH without TLS")
    smtp_trusted_networks: str = _setting("", "CIDR=SERVER pairs, comma-separated: clients in CIDR submit without "
                                          "AUTH as server SERVER (like Postfix's mynetworks)")
    smtp_max_connections: int = _setting(1000, "concurrent SMTP connections at most (421 4.7.0 beyond)")
    smtp_command_timeout: str = _setting("5m", "idle time allowed between SMTP commands (RFC 5321 §4.5.3.2.7)")
    smtp_data_timeout: str = _setting("10m", "time allowed for one message's DATA")
    smtp_max_connections_per_client: int = _setting(
        50, "concurrent SMTP connections from one client address (IPv6: one /64) at most (421 4.7.0 beyond)")
    smtp_unauthenticated_timeout: str = _setting(
        "60s", "idle time allowed between SMTP commands before AUTH (or a trusted network) identifies the client")
    sqlite_synchronous: str = _setting(
        "FULL", "SQLite synchronous pragma: FULL fsyncs every commit; NORMAL can lose the last ones on power loss"
    )
    sqlite_allow_unsafe_synchronous: bool = _setting(
        False, "allow sqlite_synchronous below FULL (NORMAL, OFF), which can lose acknowledged mail on power loss")
    worker_concurrency: int = _setting(64, "messages a worker process delivers at the same time")
    claim_batch_size: int = _setting(256, "delivery rows a worker claims in one query")
    lease_time: str = _setting("5m", "how long a claimed delivery stays leased before another worker may take it")
    poll_interval: str = _setting("1s", "fallback poll for due work when no wake-up arrives")
    worker_heartbeat_interval: str = _setting(
        "3s", "how often a worker process renews its presence and releases the leases of worker processes gone")
    worker_dead_after: str = _setting(
        "15s", "a worker on another machine silent this long is gone: its leases are released (same machine: "
        "its lock file tells at once)")
    relay_max_connections: int = _setting(16, "open SMTP connections to the relay at most")
    relay_messages_per_connection: int = _setting(1000, "messages sent over one relay connection before it is renewed")
    relay_tls_verify: bool = _setting(True, "verify the relay's TLS certificate")
    relay_ca_file: str = _setting("", "extra CA bundle (PEM) trusted for the relay's certificate")
    smtp_timeout: str = _setting("60s", "timeout for each reply from the relay")
    max_schedule_ahead: str = _setting("30d", "how far ahead SendAt (scheduled sending) may be")
    return_path: str = _setting(
        "pm_bounces@", "VERP envelope sender LOCAL@DOMAIN: mail goes out from LOCAL+TOKEN@DOMAIN and the SMTP listener "
        "takes bounces for DOMAIN without AUTH; an empty DOMAIN means smtp_hostname; 'off' turns VERP off")
    dkim_key_dir: str = _setting(
        "", "a folder of DKIM private keys kept outside Posthouse, DOMAIN/SELECTOR.private (as opendkim-genkey "
        "writes them) or .pem, RSA or Ed25519: mail From that domain is signed with every key in its folder; read "
        "at start")
    bounce_testing_domain: str = _setting(
        "bounce-testing.postmarkapp.com", "in sandbox delivery, TYPE@this domain simulates a bounce of that type "
        "(as does the X-PM-Bounce-Type header)")
    webhook_retry_schedule: str = _setting(
        "1m,5m,10m,10m,10m,15m,30m,1h,2h,6h", "delays between webhook post attempts (Postmark's); then it fails")
    webhook_timeout: str = _setting("10s", "time allowed for one webhook post, connection included")
    webhook_allowed_networks: str = _setting(
        "", "non-public networks webhooks may target (CIDR, comma-separated), e.g. 127.0.0.0/8,::1/128 for an "
        "application on this machine; none by default")
    webhook_concurrency: int = _setting(16, "webhook posts in flight at most per process")
    tracking_http: str = _setting("127.0.0.1:8081", "HOST:PORT the tracking listener (open pixel, tracked links) "
                                  "listens on")
    tracking_trusted_proxies: str = _setting(
        "", "reverse proxies in front of the tracking listener (CIDR, comma-separated) whose X-Forwarded-For is "
        "believed for the reader's address")
    tracking_queue_size: int = _setting(10_000, "opens and clicks waiting to be recorded at most; beyond, the "
                                        "listener waits")
    geoip_database: str = _setting("", "MaxMind DB file (GeoLite2/GeoIP2 City or Country) for the Geo of opens and "
                                   "clicks; empty: no Geo")
    http_max_connections: int = _setting(
        1000, "open HTTP connections at most; past it the longest-idle one is closed, or the new one hears 503")
    http_header_timeout: str = _setting(
        "20s", "time allowed from connect (or from the first byte of a kept-alive request) to the end of its headers")
    http_keep_alive_timeout: str = _setting("30s", "idle time a kept-alive HTTP connection waits for its next request")
    http_body_timeout: str = _setting("30s", "idle time allowed between pieces of a request body (408 beyond)")
    http_body_budget: int = _setting(
        128 * 1024 * 1024, "bytes of request bodies read and handled at once across all requests; a request past "
        "it waits up to http_body_wait, then hears 503")
    http_body_wait: str = _setting("5s", "how long a request body waits for room in http_body_budget")
    test_token_max_body: int = _setting(
        1024 * 1024, "largest request body taken with the POSTMARK_API_TEST token, which needs no account (413 beyond)")
    test_token_concurrency: int = _setting(
        4, "requests with the POSTMARK_API_TEST token handled at once (429 beyond)")
    tracking_base_url: str = _setting(
        "", "public base URL of the tracking listener, as recipients reach it (http(s)://host[:port][/path]); the "
        "open pixel and tracked links point there; empty means http://{tracking_http}")
    dashboard: bool = _setting(True, "serve the web dashboard at /ui/ on the HTTP API listener (operators sign in "
                               "as users made with `posthouse users create`)")
    dashboard_token_login: str = _setting(
        "auto", "sign-in to the dashboard with the account token: auto (only while no dashboard user exists), on, "
        "or off")
    dashboard_session_lifetime: str = _setting(
        "12h", "a dashboard session ends after this long without use (and 7 days after sign-in at most)")
    dashboard_secure_cookies: bool = _setting(
        False, "mark dashboard cookies Secure even on plain HTTP (behind a proxy that terminates TLS); over "
        "HTTPS they always are")
    log_level: str = _setting("info", "debug, info, warning or error")

    # Derived, validated views ------------------------------------------------------------

    @property
    def http_address(self) -> tuple[str, int]:
        return parse_hostport(self.http, what="HTTP")

    @property
    def tracking_address(self) -> tuple[str, int]:
        return parse_hostport(self.tracking_http, what="tracking")

    @property
    def tracking_proxy_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(_network(n, "tracking_trusted_proxies") for n in self.tracking_trusted_proxies.split(",")
                     if n.strip())

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'posthouse.db'}"

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return parse_schedule(self.retry_schedule)

    @property
    def max_message_age_seconds(self) -> float:
        return parse_duration(self.max_message_age)

    @property
    def lease_seconds(self) -> float:
        return parse_duration(self.lease_time)

    @property
    def poll_seconds(self) -> float:
        return parse_duration(self.poll_interval)

    @property
    def worker_heartbeat_seconds(self) -> float:
        return parse_duration(self.worker_heartbeat_interval)

    @property
    def worker_dead_after_seconds(self) -> float:
        return parse_duration(self.worker_dead_after)

    @property
    def smtp_timeout_seconds(self) -> float:
        return parse_duration(self.smtp_timeout)

    @property
    def max_schedule_ahead_seconds(self) -> float:
        return parse_duration(self.max_schedule_ahead)

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        return parse_schedule(self.webhook_retry_schedule)

    @property
    def webhook_timeout_seconds(self) -> float:
        return parse_duration(self.webhook_timeout)

    @property
    def http_timeouts(self) -> tuple[float, float, float, float]:
        """(header, keep-alive, body, body wait) timeouts of the HTTP listener, in seconds."""
        return (parse_duration(self.http_header_timeout), parse_duration(self.http_keep_alive_timeout),
                parse_duration(self.http_body_timeout), parse_duration(self.http_body_wait))

    @property
    def webhook_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(_network(n, "webhook_allowed_networks") for n in self.webhook_allowed_networks.split(",")
                     if n.strip())

    def return_path_parts(self, hostname: str) -> tuple[str, str] | None:
        """(local, domain) of the VERP return path, or None when VERP is off."""
        if self.return_path.strip().lower() in ("", "off", "none"):
            return None
        local, at, domain = self.return_path.strip().rpartition("@")
        if not at or not local or "+" in local:
            raise ConfigurationError(f"invalid return_path {self.return_path!r}: use LOCAL@DOMAIN or LOCAL@ "
                                     "(LOCAL without '+')")
        return local, (domain or hostname).lower()

    @property
    def resolved_tracking_base_url(self) -> str:
        """Where tracked mail's pixel and links point, without a trailing "/"."""
        if self.tracking_base_url.strip():
            url = self.tracking_base_url.strip().rstrip("/")
            # Characters that need no escaping in HTML, quoted-printable or a URL (domain/links.py BASE_URL).
            if not _TRACKING_BASE_URL.fullmatch(url):
                raise ConfigurationError(
                    f"invalid tracking_base_url {self.tracking_base_url!r} (use http(s)://host[:port][/path], "
                    "without query or fragment)")
            return url
        host, port = self.tracking_address  # the tracking listener's own address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def dashboard_session_seconds(self) -> float:
        return parse_duration(self.dashboard_session_lifetime)

    @property
    def role_set(self) -> frozenset[str]:
        roles = frozenset(r.strip() for r in self.roles.split(",") if r.strip())
        unknown = roles - set(ROLES)
        if unknown or not roles:
            raise ConfigurationError(f"unknown role(s) {sorted(unknown)}; known roles: {', '.join(ROLES)}")
        return roles

    @property
    def smtp_listeners(self) -> list[tuple[str, int, bool]]:
        """(host, port, implicit TLS) for each SMTP listener."""
        result = []
        for item in self.smtp.split(","):
            item = item.strip()
            if not item:
                continue
            implicit = item.startswith("smtps://")
            address = item.removeprefix("smtps://").removeprefix("smtp://")
            result.append((*parse_hostport(address, what="SMTP"), implicit))
        return result

    @property
    def plaintext_auth_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(_network(n, "smtp_plaintext_auth_networks") for n in self.smtp_plaintext_auth_networks.split(",")
                     if n.strip())

    @property
    def trusted_networks(self) -> list[tuple[IPNetwork, str]]:
        """(network, server name) pairs from `CIDR=SERVER`."""
        result = []
        for item in self.smtp_trusted_networks.split(","):
            if not item.strip():
                continue
            cidr, sep, server = item.partition("=")
            if not sep or not server.strip():
                raise ConfigurationError(f"invalid smtp_trusted_networks entry {item.strip()!r} (use CIDR=SERVER)")
            result.append((_network(cidr, "smtp_trusted_networks"), server.strip()))
        return result

    @property
    def relay(self) -> RelayTarget | None:
        return RelayTarget.from_url(self.relay_url) if self.relay_url else None

    def validate(self) -> Settings:
        """Check every derived value once at start, so a bad setting is one clear line."""
        _ = (self.http_address, self.retry_delays, self.max_message_age_seconds, self.lease_seconds)
        _ = (self.poll_seconds, self.smtp_timeout_seconds, self.role_set, self.plaintext_auth_networks)
        _ = (self.trusted_networks, parse_duration(self.smtp_command_timeout), parse_duration(self.smtp_data_timeout))
        _ = (self.tracking_address, self.tracking_proxy_networks)
        if self.tracking_queue_size < 1:
            raise ConfigurationError(f"tracking_queue_size must be at least 1, got {self.tracking_queue_size}")
        if parse_duration(self.smtp_unauthenticated_timeout) <= 0 or min(self.http_timeouts) <= 0:
            raise ConfigurationError("smtp_unauthenticated_timeout and the http_*_timeout / http_body_wait settings "
                                     "must be more than zero")
        for name in ("http_max_connections", "http_body_budget", "test_token_max_body", "test_token_concurrency",
                     "smtp_max_connections", "smtp_max_connections_per_client"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")
        _ = self.resolved_tracking_base_url
        if self.dashboard_token_login not in ("auto", "on", "off"):
            raise ConfigurationError(f"invalid dashboard_token_login {self.dashboard_token_login!r} (use auto, on "
                                     "or off)")
        if self.dashboard_session_seconds <= 0:
            raise ConfigurationError("dashboard_session_lifetime must be more than zero")
        if "smtp" in self.role_set and not self.smtp_listeners:
            raise ConfigurationError("the smtp role needs at least one listener (--smtp HOST:PORT)")
        if bool(self.smtp_tls_cert) != bool(self.smtp_tls_key):
            raise ConfigurationError("smtp_tls_cert and smtp_tls_key go together: set both or neither")
        if self.delivery not in ("sandbox", "relay"):
            raise ConfigurationError(f"invalid delivery mode {self.delivery!r} (use sandbox or relay)")
        if self.delivery == "relay" and not self.relay_url:
            raise ConfigurationError("relay delivery needs a relay URL (--relay / POSTHOUSE_RELAY_URL)")
        _ = self.relay
        url = self.resolved_database_url
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigurationError(
                f"invalid database URL {url!r} (use sqlite:///PATH or postgresql://user@host/db)"
            )
        if self.sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ConfigurationError(f"invalid sqlite_synchronous {self.sqlite_synchronous!r}")
        if self.sqlite_synchronous.upper() in UNSAFE_SYNCHRONOUS and not self.sqlite_allow_unsafe_synchronous:
            raise ConfigurationError(
                f"sqlite_synchronous={self.sqlite_synchronous.upper()} can lose acknowledged mail on power loss; "
                "use FULL, or set sqlite_allow_unsafe_synchronous=true to accept that")
        if not 0 < self.worker_heartbeat_seconds * 2 <= self.worker_dead_after_seconds:
            raise ConfigurationError("worker_dead_after must be at least twice worker_heartbeat_interval (and the "
                                     "interval more than 0), or a live worker could be taken for a dead one")
        return self


def describe_settings() -> list[tuple[str, str, Any, str]]:
    """(TOML key, environment variable, default, description) for every setting."""
    return [
        (f.name, ENV_PREFIX + f.name.upper(), f.default, f.metadata["description"])
        for f in dataclasses.fields(Settings)
    ]


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if kind in (int, "int"):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"setting {name} must be an integer, got {value!r}") from None
    if kind in (bool, "bool"):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"setting {name} must be true or false, got {value!r}")
    return str(value)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Build Settings from the TOML file, the environment and explicit overrides (flags)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    known = {f.name: f.type for f in dataclasses.fields(Settings)}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"invalid config file {path}: {exc}") from None
        for key, value in data.items():
            if key not in known:
                raise ConfigurationError(f"unknown setting {key!r} in {path}")
            values[key] = value
    for name in known:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None and env_value != "":
            values[name] = env_value
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    coerced = {name: _coerce(name, known[name], value) for name, value in values.items()}
    return Settings(**coerced).validate()
