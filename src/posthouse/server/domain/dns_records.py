"""Sending domains' names and the DNS records they publish for us: read and checked, no I/O.

- Domain names are kept as lower-case A-labels (IDNA, UTS #46) without the root dot, so that one
  domain has one spelling whether it came in an API request or a From header.
- DKIM key records (RFC 6376 §3.6.1) are tag lists; one matches a key when its `p=` is the key's and its
  `k=` (default `rsa`) is the key's type. A revoked record (`p=` empty) matches nothing.
- SPF records (RFC 7208): the one TXT record starting `v=spf1` (two are a permanent error, §4.5), its
  `include:` mechanisms and `redirect=` modifier, which verification follows.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

import idna

from posthouse.server.domain.dkim_keys import DkimAlgorithm

MAX_NAME = 255  # Postmark's limit on a domain name (ErrorCode 515); RFC 1035 allows 253 without the dot
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SELECTOR_SUFFIX = {DkimAlgorithm.RSA_SHA256: "", DkimAlgorithm.ED25519_SHA256: "e"}
_KEY_TYPE = {DkimAlgorithm.RSA_SHA256: "rsa", DkimAlgorithm.ED25519_SHA256: "ed25519"}

# Mailbox providers whose addresses nobody can send as from elsewhere: their DMARC policies reject such mail,
# and a signature on them could not be given DKIM or a Return-Path. Postmark refuses them (ErrorCode 503).
PUBLIC_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "ymail.com", "rocketmail.com",
    "hotmail.com", "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com", "msn.com", "aol.com", "icloud.com",
    "me.com", "mac.com", "gmx.com", "gmx.de", "gmx.net", "web.de", "mail.com", "yandex.com", "yandex.ru", "mail.ru",
    "protonmail.com", "proton.me", "zoho.com", "qq.com", "163.com", "126.com",
})


class DomainNameError(ValueError):
    """Not a domain name mail could come from."""


@lru_cache(maxsize=4096)  # asked for every delivery's From domain (return paths, DKIM keys)
def normalize_domain(text: str) -> str:
    """`text` as a lower-case A-label without the root dot; DomainNameError when it is not a host name of at
    least two labels (letters, digits, hyphens; not all-numeric at the top)."""
    name = text.strip().rstrip(".")
    if not name or len(name) > MAX_NAME:
        raise DomainNameError(text)
    try:
        name = idna.encode(name, uts46=True).decode("ascii") if not name.isascii() else name.lower()
    except idna.IDNAError:
        raise DomainNameError(text) from None
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253 or not all(_LABEL.match(label) for label in labels) \
            or labels[-1].isdigit():
        raise DomainNameError(text)
    return name


def domain_of(address: str) -> str | None:
    """The normalized domain of an addr-spec, or None when it has none that could be ours."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return None
    try:
        return normalize_domain(domain)
    except DomainNameError:
        return None


def is_subdomain(name: str, parent: str) -> bool:
    """Whether `name` lies strictly below `parent` (both normalized)."""
    return name.endswith("." + parent)


def selector_for(algorithm: DkimAlgorithm, when: datetime, taken: set[str]) -> str:
    """A new DKIM selector, as Postmark's are made (a UTC time and a mark: `20260514093012ph`; `…phe` for an
    Ed25519 key); a suffix keeps it apart from the domain's other selectors (`taken`)."""
    base = f"{when:%Y%m%d%H%M%S}ph{_SELECTOR_SUFFIX[algorithm]}"
    selector, n = base, 1
    while selector in taken:
        n += 1
        selector = f"{base}-{n}"
    return selector


def dkim_tags(record: str) -> dict[str, str]:
    """The tags of a DKIM key record (RFC 6376 §3.2), in their order: names lower-cased, folding whitespace
    removed from values; the first of a repeated tag wins."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags.setdefault(name.strip().lower(), re.sub(r"\s+", "", value))
    return tags


def dkim_record_matches(published: str, algorithm: DkimAlgorithm, public_key: str) -> bool:
    """Whether a TXT record published at a key's name holds that key (RFC 6376 §3.6.1: `v=` first if present,
    `k=` defaults to rsa, `p=` the key)."""
    tags = dkim_tags(published)
    if "v" in tags and (tags["v"] != "DKIM1" or next(iter(tags)) != "v"):
        return False
    return tags.get("k", "rsa").lower() == _KEY_TYPE[algorithm] and tags.get("p") == public_key


def spf_record(texts: list[str]) -> str | None:
    """The domain's SPF record among its TXT records; None for none, or for two (RFC 7208 §4.5 permerror)."""
    found = [t for t in texts if t.strip().lower() == "v=spf1" or t.strip().lower().startswith("v=spf1 ")]
    return found[0].strip() if len(found) == 1 else None


def spf_includes(record: str) -> tuple[list[str], str | None]:
    """(the domains of its `include:` mechanisms, its `redirect=` domain), lower-cased without the root dot.
    A qualifier other than `+` still names the domain (`~include:` is odd but legal)."""
    includes: list[str] = []
    redirect = None
    for term in record.split()[1:]:
        lowered = term.lower()
        mechanism = lowered.lstrip("+-~?")
        if mechanism.startswith("include:"):
            includes.append(mechanism.removeprefix("include:").rstrip("."))
        elif lowered.startswith("redirect="):
            redirect = lowered.removeprefix("redirect=").rstrip(".")
    return includes, redirect


def spf_text(include: str) -> str:
    """The SPF record a domain is asked to publish (SPFTextValue), as Postmark words its own."""
    return f"v=spf1 a mx include:{include} ~all"
