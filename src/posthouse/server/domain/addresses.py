"""Email addresses: parsing Postmark's comma-separated address fields and validating each address."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: an addr-spec (`email`) and an optional display name."""

    email: str
    name: str | None = None

    def __str__(self) -> str:
        if not self.name:
            return self.email
        escaped = self.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{self.email}>'


class AddressError(ValueError):
    """An address or address list that cannot be used; `text` is the offending piece."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def has_line_break(value: str) -> bool:
    """True when a value could end a header early (header injection, RFC 5322 §2.2)."""
    return "\r" in value or "\n" in value or "\0" in value


@lru_cache(maxsize=65536)
def normalize_email(text: str) -> str:
    """Validate one addr-spec (syntax only, no DNS) and return its normalized form.

    Special-use domains (`.test`, `localhost`, …) are refused, as the official SDKs refuse them in
    responses (docs/postmark-api.md §11.3), so nothing we accept can later break a client's list call.
    """
    if has_line_break(text) or not text or len(text) > 320:
        raise AddressError(text)
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        raise AddressError(text) from None
    return result.normalized


def split_address_list(text: str) -> list[str]:
    """Split a comma-separated address list, keeping commas inside quotes, comments and `<…>`."""
    pieces: list[str] = []
    current: list[str] = []
    in_quote = False
    depth_angle = 0
    depth_paren = 0
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if ch == "\\" and in_quote:
            current.append(ch)
            escaped = True
            continue
        if ch == '"' and depth_paren == 0:
            in_quote = not in_quote
        elif not in_quote:
            if ch == "<":
                depth_angle += 1
            elif ch == ">":
                depth_angle = max(0, depth_angle - 1)
            elif ch == "(":
                depth_paren += 1
            elif ch == ")":
                depth_paren = max(0, depth_paren - 1)
            elif ch in ",;" and depth_angle == 0 and depth_paren == 0:
                pieces.append("".join(current))
                current = []
                continue
        current.append(ch)
    if in_quote or depth_angle:
        raise AddressError(text)
    pieces.append("".join(current))
    return [p.strip() for p in pieces if p.strip()]


def _unquote_name(name: str) -> str | None:
    name = name.strip()
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        inner = name[1:-1]
        out: list[str] = []
        it = iter(inner)
        for ch in it:
            out.append(next(it, "") if ch == "\\" else ch)
        name = "".join(out)
    return name or None


def parse_address(text: str) -> Address:
    """Parse `addr`, `<addr>` or `Name <addr>` into an Address with a validated email."""
    text = text.strip()
    if has_line_break(text):
        raise AddressError(text)
    if text.endswith(">") and "<" in text:
        start = text.rindex("<")
        email = text[start + 1 : -1].strip()
        name = _unquote_name(text[:start])
    else:
        email, name = text, None
    return Address(normalize_email(email), name)


def parse_address_list(text: str) -> list[Address]:
    """Parse a Postmark address field (`To`, `Cc`, `Bcc`, `ReplyTo`); raise AddressError on a bad piece."""
    if has_line_break(text):
        raise AddressError(text)
    result: list[Address] = []
    for piece in split_address_list(text):
        try:
            result.append(parse_address(piece))
        except AddressError:
            raise AddressError(piece) from None
    return result
