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
ROLES = ("api", "smtp", "worker", "tracking", "inbound")
MIN_RETENTION_DAYS, MAX_RETENTION_DAYS = 7, 365  # the range Postmark offers for its retention add-on
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


@dataclass(frozen=True, slots=True)
class DestinationLimit:
    """How hard MX delivery may press one destination (a recipient domain, or an MX host address)."""

    connections: int  # connections in use at once
    messages_per_connection: int  # transactions over one connection before it is closed
    rate: float = 0.0  # messages per second at most; 0: no limit


@dataclass(frozen=True, slots=True)
class DestinationLimits:
    """`mx_destination_limits` over the defaults: per recipient domain, and per MX host (`mx:` keys)."""

    domain_default: DestinationLimit
    host_default: DestinationLimit
    domains: Mapping[str, DestinationLimit] = field(default_factory=dict)
    # (pattern, limit): "mx.example.com" matches that host, "*.example.com" any name under example.com
    hosts: tuple[tuple[str, DestinationLimit], ...] = ()

    def for_domain(self, domain: str) -> DestinationLimit:
        return self.domains.get(domain.lower(), self.domain_default)

    def for_host(self, host: str) -> DestinationLimit:
        """The limit of the most specific pattern naming `host` (longest first), else the default."""
        host = host.lower().rstrip(".")
        for pattern, limit in self.hosts:
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return limit
        return self.host_default


def parse_destination_limits(text: str, domain_default: DestinationLimit,
                             host_default: DestinationLimit) -> DestinationLimits:
    """`KEY=CONNECTIONS/MESSAGES[/RATE],…`: KEY a recipient domain (`gmail.com`) or `mx:HOST` / `mx:*.SUFFIX`."""
    domains: dict[str, DestinationLimit] = {}
    hosts: list[tuple[str, DestinationLimit]] = []
    for item in str(text).split(","):
        if not item.strip():
            continue
        key, sep, value = item.strip().partition("=")
        parts = value.split("/")
        key = key.strip().lower().rstrip(".")
        name = key.removeprefix("mx:")
        try:
            if not sep or len(parts) not in (2, 3) or not name or " " in name:
                raise ValueError
            limit = DestinationLimit(int(parts[0]), int(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0)
        except ValueError:
            raise ConfigurationError(
                f"invalid mx_destination_limits entry {item.strip()!r} (use DOMAIN=CONNECTIONS/MESSAGES[/RATE] or "
                "mx:HOST=CONNECTIONS/MESSAGES[/RATE], e.g. gmail.com=20/100 or mx:*.google.com=20/100/50)") from None
        if limit.connections < 1 or limit.messages_per_connection < 1 or limit.rate < 0:
            raise ConfigurationError(f"invalid mx_destination_limits entry {item.strip()!r}: connections and "
                                     "messages must be at least 1, the rate 0 (no limit) or more")
        if key.startswith("mx:"):
            hosts.append((name, limit))
        else:
            domains[name] = limit
    hosts.sort(key=lambda entry: len(entry[0]), reverse=True)  # the most specific pattern wins
    return DestinationLimits(domain_default, host_default, domains, tuple(hosts))


@dataclass(frozen=True, slots=True)
class SourceAddress:
    """A local address MX delivery connects from, and the EHLO name to give from it ("" = mx_ehlo_name)."""

    address: str
    ehlo_name: str = ""

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.address).version


@dataclass(frozen=True, slots=True)
class SourcePools:
    """`mx_source_address` (every stream) and `mx_source_pools` (per message stream ID)."""

    default: tuple[SourceAddress, ...] = ()
    streams: Mapping[str, tuple[SourceAddress, ...]] = field(default_factory=dict)

    def for_stream(self, stream: str) -> tuple[SourceAddress, ...]:
        return self.streams.get(stream, self.default)


def _source_list(text: str, setting: str) -> tuple[SourceAddress, ...]:
    """`ADDRESS[/EHLO-NAME]|ADDRESS[/EHLO-NAME]…`"""
    result = []
    for entry in text.split("|"):
        address, _, ehlo = entry.strip().partition("/")
        try:
            ipaddress.ip_address(address.strip())
        except ValueError:
            raise ConfigurationError(f"invalid address {address.strip()!r} in {setting} (use ADDRESS[/EHLO-NAME], "
                                     "several separated by |)") from None
        ehlo = ehlo.strip()
        if ehlo and (not ehlo.isascii() or not ehlo.isprintable() or " " in ehlo):
            raise ConfigurationError(f"invalid EHLO name {ehlo!r} in {setting}")
        result.append(SourceAddress(address.strip(), ehlo))
    return tuple(result)


def parse_source_pools(default: str, pools: str) -> SourcePools:
    streams: dict[str, tuple[SourceAddress, ...]] = {}
    for item in pools.split(","):
        if not item.strip():
            continue
        stream, sep, addresses = item.partition("=")
        if not sep or not stream.strip() or not addresses.strip():
            raise ConfigurationError(f"invalid mx_source_pools entry {item.strip()!r} (use STREAM=ADDRESS[/EHLO]|…)")
        streams[stream.strip()] = _source_list(addresses, "mx_source_pools")
    return SourcePools(_source_list(default, "mx_source_address") if default.strip() else (), streams)


def parse_nameservers(text: str) -> tuple[tuple[str, int], ...]:
    """`IP`, `IP:PORT`, `[IPv6]`, `[IPv6]:PORT` or a bare IPv6, comma-separated → ((address, port), …), port 53
    when none is given; empty: the system's resolver configuration."""
    return tuple(_nameserver(item.strip()) for item in str(text).split(",") if item.strip())


def _nameserver(text: str) -> tuple[str, int]:
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest else "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigurationError(f"invalid DNS server {text!r} in dns_nameservers (use an IP address, with :PORT "
                                 "if not 53)") from None
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigurationError(f"invalid port in DNS server {text!r} (dns_nameservers)")
    return host, int(port)


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
    delivery: str = _setting("sandbox", "sandbox (keep mail locally), relay (send to a smarthost) or mx (deliver to "
                             "each recipient domain's MX hosts)")
    relay_url: str = _setting("", "smarthost URL for relay delivery: smtp://, smtp+starttls://, smtps://")
    retry_schedule: str = _setting(
        "30s,2m,10m,30m,1h,2h,4h", "delays between delivery attempts; the last one repeats"
    )
    max_message_age: str = _setting("5d", "give up (bounce) a message not delivered after this long")
    roles: str = _setting("api,smtp,worker,tracking",
                          "comma-separated roles this process runs: api, smtp, worker, tracking, inbound (the "
                          "smtp_inbound listeners)")
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
    dkim_signing_process: bool = _setting(
        True, "make DKIM signatures in a child process beside the worker's event loop (a second core signs); "
        "off: on the loop")
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
    dns_nameservers: str = _setting(
        "", "DNS servers asked by MX delivery and by domain verification, comma-separated IP[:PORT] ([IPv6]:PORT, "
        "e.g. 127.0.0.1:5353); empty: /etc/resolv.conf")
    dns_timeout: str = _setting("10s", "time allowed for one DNS lookup, retries included")
    dns_dnssec: bool = _setting(
        False, "trust the AD bit of dns_nameservers' answers (set only for a validating resolver on this host or "
        "reached over a trusted path): DANE needs it")
    mx_ehlo_name: str = _setting("", "EHLO name for MX delivery; empty means smtp_hostname (or this machine's FQDN): "
                                 "make it the reverse DNS name of the source address")
    mx_port: int = _setting(25, "TCP port of MX hosts (25; another only for test setups)")
    mx_ip_version: str = _setting("both", "address families MX delivery connects over: both (IPv6 first), 4 or 6")
    mx_source_address: str = _setting(
        "", "local address(es) MX delivery connects from, ADDRESS[/EHLO-NAME] separated by |; empty: the system's "
        "choice")
    mx_source_pools: str = _setting(
        "", "per message stream: STREAM=ADDRESS[/EHLO-NAME]|…, comma-separated (e.g. broadcast=192.0.2.5|192.0.2.6); "
        "a recipient domain always leaves from the same address of its pool")
    mx_connections_per_domain: int = _setting(20, "connections in use at once to one recipient domain")
    mx_connections_per_host: int = _setting(20, "connections in use at once to one MX host address")
    mx_messages_per_connection: int = _setting(100, "transactions over one MX connection before it is closed")
    mx_destination_limits: str = _setting(
        "", "overrides, comma-separated: DOMAIN=CONNECTIONS/MESSAGES[/RATE] for a recipient domain, "
        "mx:HOST=… or mx:*.SUFFIX=… for MX hosts; RATE is messages per second (e.g. gmail.com=10/100/20)")
    mx_recipients_per_transaction: int = _setting(50, "recipients of one domain in one SMTP transaction at most")
    mx_connect_timeout: str = _setting("30s", "time allowed to connect to an MX host and read its greeting")
    mx_timeout: str = _setting("2m", "time allowed for each reply from an MX host (twice that after the data)")
    mx_idle_timeout: str = _setting("10s", "an idle MX connection kept for reuse is closed after this long")
    mx_max_addresses: int = _setting(5, "MX host addresses tried for one domain in one attempt at most")
    mx_destination_wait: str = _setting(
        "60s", "how long a message waits for a busy destination's connection slot before it is deferred")
    mx_mta_sts: bool = _setting(True, "fetch and apply MTA-STS policies (RFC 8461) of recipient domains")
    mx_dane: bool = _setting(True, "apply DANE TLSA records (RFC 7672) of MX hosts; only with dns_dnssec")
    mx_tls_ca_file: str = _setting(
        "", "extra CA bundle (PEM) trusted for MTA-STS: policy hosts' HTTPS and MX certificates in enforce mode")
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
    smtp_inbound: str = _setting(
        "", "MX-style SMTP listeners for inbound mail, comma-separated HOST:PORT (port 25 style: AUTH never offered, "
        "only mail for inbound addresses and return paths taken; STARTTLS offered); empty: none")
    inbound_address_domain: str = _setting(
        "", "domain of each server's inbound address <InboundHash>@DOMAIN (its MX is the smtp_inbound "
        "listener); empty means inbound.<smtp_hostname>")
    inbound_max_message_size: int = _setting(
        50 * 1024 * 1024, "largest message the smtp_inbound listeners take, in bytes (SIZE; 552 5.3.4 beyond); the "
        "smtp listeners keep smtp_max_message_size")
    inbound_max_attachments_size: int = _setting(
        35 * 1024 * 1024, "decoded attachments one inbound message may carry in all, in bytes (Postmark's 35 MB); "
        "552 5.3.4 beyond")
    inbound_spf: bool = _setting(True, "check the SPF of inbound mail's sender and add a Received-SPF header (the "
                                 "result is passed on, never a reason to refuse)")
    inbound_dns_timeout: str = _setting("5s", "time allowed for one inbound message's SPF lookups, asked of "
                                        "dns_nameservers (temperror beyond)")
    inbound_spamd: str = _setting(
        "", "HOST:PORT of a SpamAssassin spamd that scores inbound mail (X-Spam-Status, X-Spam-Score, "
        "X-Spam-Tests; a server's InboundSpamThreshold refuses above it); empty: no spam check")
    inbound_spamd_timeout: str = _setting("10s", "time allowed for spamd to score one message; beyond it the "
                                          "message goes on without spam headers")
    inbound_spamd_max_size: int = _setting(512_000, "larger inbound messages are not sent to spamd (spamc's "
                                           "default limit)")
    inbound_retry_schedule: str = _setting(
        "1m,5m,10m,10m,10m,15m,30m,1h,2h,6h", "delays between attempts to post an inbound message to its "
        "server's InboundHookUrl (Postmark's inbound schedule); then the message is Failed")
    dkim_keys: str = _setting("rsa", "DKIM keys a new sending domain (or a key rotation) gets: rsa (RSA-2048), "
                              "ed25519, or both (two selectors, both signing)")
    spf_include: str = _setting("", "the domain a sending domain's SPF record must include (include:VALUE) to pass "
                                "verifyspf; empty: the return-path domain")
    sender_policy: str = _setting(
        "any", "From addresses mail is accepted from: any, or verified (an address on a DKIM-verified domain or "
        "with a confirmed sender signature; others are refused: ErrorCode 400, over SMTP 554 5.7.1)")
    sender_confirmation_from: str = _setting(
        "", "From address of the mail asking a new sender signature's address to confirm it; empty: postmaster@ "
        "the return-path domain")
    sender_confirmation_server: str = _setting(
        "", "server whose outbound stream sends sender confirmation mail (its activity lists it); empty: the "
        "first server")
    api_base_url: str = _setting(
        "", "public base URL of the HTTP API, as people reach it (http(s)://host[:port][/path]); sender "
        "confirmation links point there; empty means http://{http}")
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
    retention_days: int = _setting(
        45, "days messages (with their content, events, opens and clicks, bounces) and webhook posts are kept, for "
        "servers without a RetentionDays of their own (7 to 365); stats are kept for ever")
    rate_limit_per_server: int = _setting(
        0, "messages per second each server may submit over the API and SMTP, on average, per process; past it HTTP "
        "429 with Retry-After and SMTP 451 4.7.1; 0: no limit")
    rate_limit_burst: int = _setting(
        0, "messages a server may submit at once before rate_limit_per_server applies; 0: one second's worth")
    api_rate_limit_per_token: int = _setting(
        0, "API requests per second each token may make, on average, per process; past it HTTP 429 with Retry-After; "
        "0: no limit")
    api_rate_limit_burst: int = _setting(
        0, "API requests a token may make at once before api_rate_limit_per_token applies; 0: one second's worth")
    log_format: str = _setting("human", "human (one readable line per event, coloured on a terminal) or json (one JSON "
                               "object per line)")
    log_repeat_interval: str = _setting(
        "60s", "a relay, MX host or webhook that keeps failing is logged once per this interval, with the count of "
        "failures not logged since")
    metrics_enabled: bool = _setting(True, "serve Prometheus metrics at /metrics on the API listener (and on "
                                     "metrics_http)")
    metrics_http: str = _setting("", "HOST:PORT of a listener for /metrics and /healthz alone, for processes "
                                 "without the api role (a worker node); empty: none")
    metrics_token: str = _setting("", "if set, /metrics asks for `Authorization: Bearer <this token>`")
    metrics_allowed_networks: str = _setting(
        "", "if set, only clients in these networks (CIDR, comma-separated) may read /metrics")

    # Derived, validated views ------------------------------------------------------------

    @property
    def http_address(self) -> tuple[str, int]:
        return parse_hostport(self.http, what="HTTP")

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return parse_hostport(self.metrics_http, what="metrics") if self.metrics_http.strip() else None

    @property
    def metrics_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(_network(n, "metrics_allowed_networks") for n in self.metrics_allowed_networks.split(",")
                     if n.strip())

    @property
    def log_repeat_seconds(self) -> float:
        return parse_duration(self.log_repeat_interval)

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
    def dns_timeout_seconds(self) -> float:
        return parse_duration(self.dns_timeout)

    @property
    def resolved_api_base_url(self) -> str:
        """Where the HTTP API is reached from outside (sender confirmation links), without a trailing "/"."""
        if self.api_base_url.strip():
            url = self.api_base_url.strip().rstrip("/")
            if not _TRACKING_BASE_URL.fullmatch(url):
                raise ConfigurationError(f"invalid api_base_url {self.api_base_url!r} (use "
                                         "http(s)://host[:port][/path], without query or fragment)")
            return url
        host, port = self.http_address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

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
    def inbound_listeners(self) -> list[tuple[str, int]]:
        """(host, port) for each MX-style inbound listener."""
        return [parse_hostport(item.strip().removeprefix("smtp://"), what="inbound SMTP")
                for item in self.smtp_inbound.split(",") if item.strip()]

    def resolved_inbound_address_domain(self, hostname: str) -> str:
        """The domain of the servers' inbound addresses (lower-cased, no trailing dot)."""
        domain = self.inbound_address_domain.strip().lower().rstrip(".") or f"inbound.{hostname.lower()}"
        if "@" in domain or " " in domain or "." not in domain:
            raise ConfigurationError(f"invalid inbound_address_domain {self.inbound_address_domain!r} (a domain "
                                     "name, e.g. inbound.example.com)")
        return domain

    @property
    def inbound_spamd_address(self) -> tuple[str, int] | None:
        return parse_hostport(self.inbound_spamd, what="spamd") if self.inbound_spamd.strip() else None

    @property
    def inbound_retry_delays(self) -> tuple[float, ...]:
        return parse_schedule(self.inbound_retry_schedule)

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

    @property
    def dns_servers(self) -> tuple[tuple[str, int], ...]:
        return parse_nameservers(self.dns_nameservers)

    @property
    def mx_limits(self) -> DestinationLimits:
        domain = DestinationLimit(self.mx_connections_per_domain, self.mx_messages_per_connection)
        host = DestinationLimit(self.mx_connections_per_host, self.mx_messages_per_connection)
        return parse_destination_limits(self.mx_destination_limits, domain, host)

    @property
    def mx_sources(self) -> SourcePools:
        return parse_source_pools(self.mx_source_address, self.mx_source_pools)

    @property
    def mx_timeouts(self) -> tuple[float, float, float, float, float]:
        """(connect, reply, idle, destination wait, DNS) timeouts of MX delivery, in seconds."""
        return (parse_duration(self.mx_connect_timeout), parse_duration(self.mx_timeout),
                parse_duration(self.mx_idle_timeout), parse_duration(self.mx_destination_wait),
                parse_duration(self.dns_timeout))

    def _validate_mx(self) -> None:
        _ = (self.dns_servers, self.mx_sources)
        if min(self.mx_timeouts) <= 0:
            raise ConfigurationError("mx_connect_timeout, mx_timeout, mx_idle_timeout, mx_destination_wait and "
                                     "dns_timeout must be more than zero")
        for name in ("mx_connections_per_domain", "mx_connections_per_host", "mx_messages_per_connection",
                     "mx_recipients_per_transaction", "mx_max_addresses"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")
        _ = self.mx_limits
        if self.mx_ip_version not in ("both", "4", "6"):
            raise ConfigurationError(f"invalid mx_ip_version {self.mx_ip_version!r} (use both, 4 or 6)")
        if not 0 < self.mx_port <= 65535:
            raise ConfigurationError(f"invalid mx_port {self.mx_port}")
        name = self.mx_ehlo_name
        if name and (not name.isascii() or not name.isprintable() or " " in name):
            raise ConfigurationError(f"invalid mx_ehlo_name {name!r} (a domain name)")

    def validate(self) -> Settings:
        """Check every derived value once at start, so a bad setting is one clear line."""
        _ = (self.http_address, self.retry_delays, self.max_message_age_seconds, self.lease_seconds)
        _ = (self.poll_seconds, self.smtp_timeout_seconds, self.role_set, self.plaintext_auth_networks)
        _ = (self.trusted_networks, parse_duration(self.smtp_command_timeout), parse_duration(self.smtp_data_timeout))
        _ = (self.tracking_address, self.tracking_proxy_networks)
        _ = (self.inbound_listeners, self.inbound_spamd_address, self.inbound_retry_delays)
        _ = (parse_duration(self.inbound_dns_timeout), parse_duration(self.inbound_spamd_timeout))
        for name in ("inbound_max_message_size", "inbound_max_attachments_size", "inbound_spamd_max_size"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.tracking_queue_size < 1:
            raise ConfigurationError(f"tracking_queue_size must be at least 1, got {self.tracking_queue_size}")
        if parse_duration(self.smtp_unauthenticated_timeout) <= 0 or min(self.http_timeouts) <= 0:
            raise ConfigurationError("smtp_unauthenticated_timeout and the http_*_timeout / http_body_wait settings "
                                     "must be more than zero")
        for name in ("http_max_connections", "http_body_budget", "test_token_max_body", "test_token_concurrency",
                     "smtp_max_connections", "smtp_max_connections_per_client"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not MIN_RETENTION_DAYS <= self.retention_days <= MAX_RETENTION_DAYS:
            raise ConfigurationError(f"retention_days must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS}, "
                                     f"got {self.retention_days}")
        for name in ("rate_limit_per_server", "rate_limit_burst", "api_rate_limit_per_token", "api_rate_limit_burst"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be 0 (no limit) or more, got {getattr(self, name)}")
        _ = self.resolved_tracking_base_url
        if self.dashboard_token_login not in ("auto", "on", "off"):
            raise ConfigurationError(f"invalid dashboard_token_login {self.dashboard_token_login!r} (use auto, on "
                                     "or off)")
        if self.dashboard_session_seconds <= 0:
            raise ConfigurationError("dashboard_session_lifetime must be more than zero")
        _ = (self.dns_servers, self.dns_timeout_seconds, self.resolved_api_base_url)
        if self.dkim_keys not in ("rsa", "ed25519", "both"):
            raise ConfigurationError(f"invalid dkim_keys {self.dkim_keys!r} (use rsa, ed25519 or both)")
        if self.sender_policy not in ("any", "verified"):
            raise ConfigurationError(f"invalid sender_policy {self.sender_policy!r} (use any or verified)")
        if "inbound" in self.role_set and not self.inbound_listeners:
            raise ConfigurationError("the inbound role needs at least one listener (--smtp-inbound HOST:PORT)")
        _ = (self.metrics_address, self.metrics_networks, self.log_repeat_seconds)
        if self.log_format not in ("human", "json"):
            raise ConfigurationError(f"invalid log_format {self.log_format!r} (use human or json)")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigurationError(f"invalid log_level {self.log_level!r} (use debug, info, warning or error)")
        if "smtp" in self.role_set and not self.smtp_listeners:
            raise ConfigurationError("the smtp role needs at least one listener (--smtp HOST:PORT)")
        if bool(self.smtp_tls_cert) != bool(self.smtp_tls_key):
            raise ConfigurationError("smtp_tls_cert and smtp_tls_key go together: set both or neither")
        if self.delivery not in ("sandbox", "relay", "mx"):
            raise ConfigurationError(f"invalid delivery mode {self.delivery!r} (use sandbox, relay or mx)")
        self._validate_mx()
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
