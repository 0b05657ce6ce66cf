"""Where a webhook may be posted: the URL, its resolved addresses and the custom headers, checked against SSRF.

The threat: a webhook URL is chosen by whoever holds a server token, and our server posts to it
from inside the operator's network. Without these checks that user could make Posthouse reach the
cloud metadata service (169.254.169.254), the database, or anything else on a private network,
and read the answer back through the delivery log (server-side request forgery, OWASP A10:2021).

Two layers, both needed:

- `validate_webhook_url` checks the text of the URL (scheme, host, no userinfo) and, when the host
  is an address literal, the address. It runs when a webhook is saved and before every post, and
  returns the URL normalised: a non-ASCII host becomes the ASCII name a connection would use (IDNA,
  UTS #46, which folds full-width and other compatibility forms as NFKC does and reads "。" as a dot).
  So "http://１０。０。０。１/" is checked as the 10.0.0.1 it is, once, when saved, and the poster
  posts to exactly the URL that was checked.
- `resolve_and_check` resolves the host name and refuses it if *any* address is forbidden; the
  poster then connects to one of exactly those addresses. Checking one resolution and letting
  the HTTP client resolve again would let a DNS server answer "public" to the check and "private"
  to the connect (DNS rebinding).

Loopback (127.0.0.0/8, ::1) is refused like any other non-public address: whoever holds a server
token could otherwise post to every HTTP service on the machine and read its answers in the delivery
log. An operator whose application runs on the same machine lists loopback in `allowed_networks`
(`webhook_allowed_networks = "127.0.0.0/8,::1/128"`); everything listed there is allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import unquote, urlsplit, urlunsplit

import idna

__all__ = [
    "Network",
    "Resolver",
    "WebhookHeaderError",
    "WebhookUrlError",
    "resolve_and_check",
    "split_userinfo",
    "system_resolver",
    "validate_webhook_headers",
    "validate_webhook_url",
]

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
# host, port → the addresses a connection to host:port would try, in order.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class WebhookUrlError(ValueError):
    """The URL cannot be a webhook target; the message says why, for the API user to read."""


class WebhookHeaderError(ValueError):
    """A custom header cannot be sent; the message says which and why."""


# 100.64.0.0/10 (RFC 6598, carrier-grade NAT) is neither private nor global to `ipaddress`.
_SHARED = IPv4Network("100.64.0.0/10")
# NAT64's well-known prefix (RFC 6052): on a NAT64 network 64:ff9b::a00:1 reaches 10.0.0.1.
_NAT64 = IPv6Network("64:ff9b::/96")
_UNIQUE_LOCAL = IPv6Network("fc00::/7")  # RFC 4193
# Hosts the resolver reads as IPv4 although `ipaddress` does not: "2130706433", "0x7f.1",
# "017700000001", "127.1" (inet_aton's forms; WHATWG URL parsing reads them the same way).
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.IGNORECASE)
# Characters with no business in a URL we post to: controls and spaces (urlsplit silently drops
# tabs and newlines, so the host it sees may not be the one another parser sees) and backslashes
# (WHATWG parsers read "\" as "/", so "http://a\@b/" has host a there and host b here).
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
# RFC 9110 §5.1: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: no CR, LF or NUL in a field value (they would split or end the header).
_UNSAFE_VALUE = re.compile(r"[\x00\r\n]")
# Custom headers must not change how the request is framed or routed (request smuggling, or a
# Host that no longer matches the address we checked), nor how we read the answer (a compressed
# answer could expand past our read limit), nor override what we sign: Content-Type and the
# Standard Webhooks headers are ours.
_RESERVED_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade",
    "expect", "proxy-authorization", "proxy-connection", "content-type", "content-encoding", "accept-encoding",
})  # fmt: skip


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address that packets to an IPv6 address really reach, for the transition forms."""
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d, a dual-stack socket connects over IPv4
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    if address.sixtofour is not None:  # 2002:AABB:CCDD::/48 (RFC 3056)
        return address.sixtofour
    return None


def _refusal(address: Address, allowed_networks: Sequence[Network]) -> str | None:
    """Why posting to `address` is forbidden, or None when it is allowed."""
    embedded = _embedded_ipv4(address) if isinstance(address, IPv6Address) else None
    if any(a in net for a in (address, embedded) if a is not None for net in allowed_networks):
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        # An IPv4-mapped address is the IPv4 address: judge that one (::ffff:10.0.0.1 is private).
        return _refusal(address.ipv4_mapped, allowed_networks)
    reason = (
        "a loopback address" if address.is_loopback
        else "an unspecified address" if address.is_unspecified
        else "a link-local address" if address.is_link_local  # 169.254.169.254: the cloud metadata service
        else "a multicast address" if address.is_multicast
        else "a shared (carrier-grade NAT) address" if address in _SHARED
        else "a site-local address" if isinstance(address, IPv6Address) and address.is_site_local
        else "a unique-local address" if address in _UNIQUE_LOCAL
        else "a private address" if address.is_private
        else "a reserved address" if address.is_reserved
        else "not a public address" if not address.is_global
        else None
    )  # fmt: skip
    if reason is None and embedded is not None and _refusal(embedded, ()) is not None:
        # 6to4 and NAT64 forms reach the embedded IPv4 address through a gateway, so that address decides.
        reason = f"an IPv6 address that embeds the non-public {embedded}"
    return reason


def _check_address(host: str, address: Address, allowed_networks: Sequence[Network]) -> None:
    reason = _refusal(address, allowed_networks)
    if reason is not None:
        shown = host if host == str(address) else f"{host} ({address})"
        raise WebhookUrlError(
            f"webhook URL host {shown} is {reason}; webhooks go only to public addresses and the networks"
            " listed in the webhook_allowed_networks setting"
        )


def _literal_address(host: str) -> Address | None:
    """The address a host stands for without asking DNS: an IP literal or a numeric IPv4 form."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return IPv4Address(socket.inet_aton(host.removesuffix(".")))
        except OSError:
            # Numeric but out of range ("http://99999999999/"): no resolver would give it a
            # meaning we could check, so refuse it rather than guess.
            raise WebhookUrlError(f"webhook URL host {host} is neither a valid address nor a name") from None
    return None


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without userinfo, its (username, password) or None). Postmark takes Basic credentials
    as `https://user:pass@host/` (§7.2); we keep them apart, where they are not shown or logged with
    the URL. Raises WebhookUrlError for a URL that parsers could read differently."""
    if _UNSAFE_URL_CHARS.search(url):
        raise WebhookUrlError("it must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise WebhookUrlError(str(exc)) from None
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (unquote(username), unquote(password))


def _ascii_host(host: str) -> str:
    """A non-ASCII host as the ASCII name a connection uses (IDNA with UTS #46 mapping)."""
    try:
        return idna.encode(host, uts46=True, std3_rules=True).decode("ascii")
    except idna.IDNAError as exc:
        raise WebhookUrlError(f"webhook URL host {host} is not a valid name: {exc}") from None


def validate_webhook_url(url: str, *, allowed_networks: Sequence[Network] = ()) -> str:
    """Return `url`, normalised, if it may be a webhook target, else raise WebhookUrlError saying why.

    Refused: schemes other than http and https; a missing host; userinfo ("user:pass@", since
    credentials belong in HttpAuth where they are not logged with the URL); and hosts that are
    addresses outside the public internet (loopback, private, link-local, unique-local, unspecified,
    multicast, reserved, shared/CGNAT), unless they lie in `allowed_networks`. A non-ASCII host (or
    port) is normalised first (module docstring) and the normalised URL is what is checked and
    returned; save and post that one. Host names are not resolved here: `resolve_and_check` does
    that before each post.
    """
    if _UNSAFE_URL_CHARS.search(url):
        raise WebhookUrlError("webhook URL must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port, or brackets that do not hold an IPv6 address
        raise WebhookUrlError(f"webhook URL is malformed: {exc}") from None
    if not parts.scheme:
        raise WebhookUrlError("webhook URL must be absolute, starting with http:// or https://")
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlError(f"webhook URL must use http or https, not {parts.scheme}")
    if "@" in parts.netloc:
        raise WebhookUrlError("webhook URL must not contain a user name or password; use HttpAuth instead")
    host = parts.hostname
    if not host:
        raise WebhookUrlError("webhook URL has no host")
    if port == 0:
        raise WebhookUrlError("webhook URL port must be between 1 and 65535")
    if not parts.netloc.isascii():
        # Written once in the form the HTTP client reads it in (a non-ASCII port never gets here: urlsplit
        # refuses one).
        netloc = _ascii_host(host) + (f":{port}" if port is not None else "")
        url = urlunsplit(parts._replace(netloc=netloc))
        parts = urlsplit(url)
        host = parts.hostname or ""
    if "%" in host:
        # An IPv6 zone ("[fe80::1%25eth0]") names an interface of this machine: never a webhook.
        raise WebhookUrlError("webhook URL host must not carry an IPv6 zone")
    address = _literal_address(host)
    if address is None and (host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost")):
        address = IPv4Address("127.0.0.1")  # RFC 6761 §6.3: these names are loopback, whatever DNS says
    if address is not None:
        _check_address(host, address, allowed_networks)
    return url


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (getaddrinfo, as a connection would use it), in its order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_and_check(
    host: str, port: int, allowed_networks: Sequence[Network] = (), *, resolver: Resolver = system_resolver
) -> list[str]:
    """The addresses `host` resolves to, once each and in order, if every one of them is allowed.

    Refusing when *any* address is forbidden (not only the first) matters: a client may try the
    next address when one fails, and an attacker controls the order of their own DNS answers.
    The caller must connect to one of the returned addresses, never resolve `host` again.
    Raises WebhookUrlError for a forbidden address and OSError (socket.gaierror) when the name
    does not resolve, which is worth retrying later.
    """
    literal = _literal_address(host)
    if literal is not None:
        _check_address(host, literal, allowed_networks)
        return [str(literal)]
    found = await resolver(host, port)
    addresses: list[str] = []
    for text in found:
        # getaddrinfo returns "fe80::1%eth0" for scoped addresses; the scope does not change the check.
        address = ipaddress.ip_address(text.split("%", 1)[0])
        _check_address(host, address, allowed_networks)
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} resolved to no address")
    return addresses


def validate_webhook_headers(
    headers: Sequence[tuple[str, str]], *, has_basic_auth: bool = False
) -> list[tuple[str, str]]:
    """Return the custom headers (Postmark's `HttpHeaders`) as a list if all of them may be sent.

    Refused: names that are not RFC 9110 tokens, values with CR, LF or NUL (header injection),
    headers that frame or route the request or that we set ourselves (Content-Type, the
    Standard Webhooks `webhook-*` headers), and Authorization when HttpAuth already sets it.
    """
    checked: list[tuple[str, str]] = []
    for name, value in headers:
        lowered = name.lower()
        if not _TOKEN.fullmatch(name):
            raise WebhookHeaderError(f"custom header name {name!r} is not a valid HTTP field name")
        if _UNSAFE_VALUE.search(value):
            raise WebhookHeaderError(f"custom header {name} has a line break or NUL in its value")
        if lowered in _RESERVED_HEADERS or lowered.startswith("webhook-"):
            raise WebhookHeaderError(f"custom header {name} is set by Posthouse and cannot be overridden")
        if lowered == "authorization" and has_basic_auth:
            raise WebhookHeaderError("custom header Authorization conflicts with HttpAuth; set only one")
        checked.append((name, value))
    return checked
