"""Media types: reading the `type/subtype; attribute=value` a client gives for an attachment, and writing it back.

The grammar is RFC 2045 §5.1: a type and a subtype that are tokens, then any number of
`; attribute=value` parameters whose value is a token or a quoted-string (RFC 822 §3.3), with
optional whitespace between the pieces of this structured field. Clients send parameters as a
matter of course (django-anymail: `text/plain; charset="utf-8"`), so they are read, checked and
kept, not refused.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 2045 §5.1: token := 1*<any US-ASCII CHAR except SPACE, CTLs, or tspecials>.
_TSPECIALS = '()<>@,;:\\"/[]?='
_TOKEN_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset(_TSPECIALS)
# RFC 822 §3.3: qtext is any CHAR but '"', "\" and CR; CTLs other than HTAB are refused here too,
# since nothing legitimate puts them in a parameter and a reader may act on them.
_QTEXT_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"} | {"\t"}
_WHITESPACE = " \t"
# A Content-Type is written on one line per word; this keeps every word well inside the 998
# octets RFC 5322 §2.1.1 allows a line, "Content-Type: " and a following ";" included.
MAX_MEDIA_TYPE = 900


class MediaTypeError(ValueError):
    """A media type that does not follow RFC 2045 §5.1; the text says what is wrong."""


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed media type: type, subtype and attribute names in lower case (RFC 2045 §5.1 says
    they are case-insensitive), parameter values exactly as given, without their quotes."""

    type: str
    subtype: str
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def essence(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def is_composite(self) -> bool:
        """message/* and multipart/* (RFC 2046 §5): their bodies are parsed, never opaque bytes."""
        return self.type in ("message", "multipart")

    def without(self, attribute: str) -> MediaType:
        """This media type less the parameter `attribute`, in every RFC 2231 form (`name*`, `name*0*`…)."""
        kept = tuple(
            (name, value)
            for name, value in self.parameters
            if name != attribute and not name.startswith(attribute + "*")
        )
        return MediaType(self.type, self.subtype, kept)

    def words(self) -> list[str]:
        """`type/subtype;` and each `attribute=value;`, the last without its ";", ready to fold between."""
        words = [self.essence] + [f"{name}={_value(name, value)}" for name, value in self.parameters]
        return [word + ";" for word in words[:-1]] + [words[-1]]

    def __str__(self) -> str:
        return " ".join(self.words())


def _value(attribute: str, value: str) -> str:
    if attribute.endswith("*") or (value and _is_token(value)):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_token(text: str) -> bool:
    return all(ch in _TOKEN_CHARS for ch in text)


def parse_media_type(text: str) -> MediaType:
    """Read `type/subtype *(; attribute=value)`; raise MediaTypeError saying what is wrong.

    A CR, LF or NUL is refused first: written into the Content-Type field it would end the field
    and start another (header injection). A trailing ";" is tolerated (common, and harmless);
    comments, a parameter given twice and non-ASCII text are not (RFC 2231 is the way to carry
    non-ASCII, and its `attribute*=charset''…` form is a token, so it passes).
    """
    if "\r" in text or "\n" in text or "\0" in text:
        raise MediaTypeError("it cannot contain line breaks")
    if len(text) > MAX_MEDIA_TYPE:
        raise MediaTypeError(f"it is too long: at most {MAX_MEDIA_TYPE} characters")
    reader = _Reader(text)
    reader.skip_whitespace()
    type_ = reader.token("type")
    reader.skip_whitespace()
    reader.expect("/", "a '/' after the type")
    reader.skip_whitespace()
    subtype = reader.token("subtype")
    parameters: list[tuple[str, str]] = []
    seen: set[str] = set()
    while True:
        reader.skip_whitespace()
        if reader.at_end():
            break
        reader.expect(";", "';' before a parameter")
        reader.skip_whitespace()
        if reader.at_end():
            break
        attribute = reader.token("parameter name").lower()
        reader.skip_whitespace()
        reader.expect("=", f"'=' after the parameter name '{attribute}'")
        reader.skip_whitespace()
        if reader.peek() == '"':
            if attribute.endswith("*"):
                raise MediaTypeError(f"the RFC 2231 parameter '{attribute}' takes an unquoted value")
            value = reader.quoted_string()
        else:
            value = reader.token(f"value of the parameter '{attribute}'")
        if attribute in seen:
            raise MediaTypeError(f"the parameter '{attribute}' is given twice")
        seen.add(attribute)
        parameters.append((attribute, value))
    return MediaType(type_.lower(), subtype.lower(), tuple(parameters))


class _Reader:
    """A cursor over the text being parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_whitespace(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise MediaTypeError(f"expected {what}{self._found()}")
        self.pos += 1

    def token(self, what: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        if self.pos == start:
            raise MediaTypeError(f"expected a {what}{self._found()}")
        return self.text[start : self.pos]

    def quoted_string(self) -> str:
        self.pos += 1  # the opening quote
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise MediaTypeError("a quoted value is not closed")
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                ch = self.peek()
                if not ch:
                    raise MediaTypeError("a quoted value is not closed")
                self.pos += 1
                if ch not in _QTEXT_CHARS and ch not in '"\\':
                    raise MediaTypeError(f"a quoted value holds the character {ch!r}")
            elif ch not in _QTEXT_CHARS:
                raise MediaTypeError(f"a quoted value holds the character {ch!r}")
            out.append(ch)

    def _found(self) -> str:
        if self.at_end():
            return ", found the end"
        return f", found {self.text[self.pos]!r} at position {self.pos + 1}"
