"""HTML tags found the way a browser's tokenizer finds them, with the offsets of their attribute values.

Link tracking rewrites `<a href>` values in place and must leave every other character of the HTML
as the sender wrote it, so it cannot parse into a tree and serialise back. It needs to know only
where the real tags are: not inside comments, `<script>`, `<style>`, `<title>`, `<textarea>` and the
other raw-text elements, not an `href=` that sits inside another attribute's quotes. `scan_tags` follows
the tokenizer of the WHATWG HTML standard (§13.2.5) for everything that decides that: comments and
their odd endings (`<!-->`, `--!>`), bogus comments (`<?…>`, `<!…>`, `</ …>`), DOCTYPE, attribute
syntax (unquoted values, `/` between attributes, a quote inside a name, a repeated attribute dropped),
the raw-text and RCDATA elements and the script data escape states, and end-of-file inside a tag (the
tag does not exist). Tests compare it with a conforming parser (lexbor, through selectolax).

Not followed: foreign content (`<svg>`, `<math>`), where `<style>` is an ordinary element and
`<![CDATA[` opens a section; `<template>` contents, which are not part of the document; and
`<frameset>` documents. Mail clients do not render links from any of these anyway. `<noscript>` is
read as markup, as by a parser with scripting disabled, which is how a mail client shows it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

# §13.2.5.1: after input preprocessing CR is LF, so CR counts as whitespace too.
_SPACE = "\t\n\f\r "
_SPACES = re.compile(r"[\t\n\f\r ]*")
_BEFORE_ATTRIBUTE = re.compile(r"[\t\n\f\r /]*")  # "/" not followed by ">" acts as a separator (§13.2.5.40)
_TAG_NAME = re.compile(r"[A-Za-z][^\t\n\f\r />]*")
_ATTRIBUTE_NAME = re.compile(r"[^\t\n\f\r />][^\t\n\f\r /=>]*")  # a leading "=" is part of the name
_UNQUOTED_VALUE = re.compile(r"[^\t\n\f\r >]+")

# Elements whose content the tree builder tells the tokenizer to read as text until their end tag
# (§13.2.6.4.4 / §13.2.6.4.7): RCDATA (character references decoded) or RAWTEXT; either way no tags.
_TEXT_ELEMENTS = frozenset({"title", "textarea", "style", "xmp", "iframe", "noembed", "noframes"})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class Attribute:
    """An attribute as written: its name in lower case and the offsets of its value (inside the quotes,
    if any); `start == end` for an empty or absent value."""

    name: str
    start: int
    end: int
    quote: str  # '"', "'" or "" (unquoted or no value)


@dataclass(frozen=True, slots=True)
class Tag:
    """A start or end tag: its name in lower case, offsets from "<" to after ">", and its attributes
    (the first of each name only: the tokenizer drops a repeated one, §13.2.5.33)."""

    name: str
    start: int
    end: int
    closing: bool
    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> Attribute | None:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        return None


@dataclass(frozen=True, slots=True)
class Scan:
    """The tags asked for, in document order, and whether the text ended in the data state (not inside a
    comment, a tag, or an element read as text), where markup appended at the end would count as markup."""

    tags: list[Tag]
    complete: bool


def _skip(pattern: re.Pattern[str], html: str, pos: int) -> int:
    """After what `pattern` (which may match nothing) matches at `pos`."""
    match = pattern.match(html, pos)
    return match.end() if match is not None else pos


def _lower(text: str) -> str:
    # The tokenizer lower-cases ASCII letters only.
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def scan_tags(html: str, names: Collection[str]) -> Scan:
    """The start and end tags named in `names` (lower case), with their attributes."""
    found: list[Tag] = []
    n = len(html)
    pos = 0
    while True:
        lt = html.find("<", pos)
        if lt < 0 or lt + 1 >= n:
            return Scan(found, True)
        c = html[lt + 1]
        if c.isascii() and c.isalpha():
            tag = _read_tag(html, lt, lt + 1, closing=False, names=names, found=found)
            if tag is None:
                return Scan(found, False)
            pos, name = tag
            if name in _TEXT_ELEMENTS:
                pos = _text_end(html, pos, name)
            elif name == "script":
                pos = _script_end(html, pos)
            elif name == "plaintext":
                return Scan(found, False)  # §13.2.5.7: the rest of the document is text
            if pos < 0:
                return Scan(found, False)
        elif c == "/":
            c2 = html[lt + 2] if lt + 2 < n else ""
            if c2.isascii() and c2.isalpha():
                tag = _read_tag(html, lt, lt + 2, closing=True, names=names, found=found)
                if tag is None:
                    return Scan(found, False)
                pos = tag[0]
            elif c2 == ">":
                pos = lt + 3  # "</>" is dropped
            elif not c2:
                # "</" at the end is text, but what is appended would continue it ("</<img…>" is a comment).
                return Scan(found, False)
            else:
                pos = _bogus_comment_end(html, lt + 2)
        elif c == "!":
            pos = _comment_end(html, lt + 4) if html.startswith("--", lt + 2) else _bogus_comment_end(html, lt + 2)
        elif c == "?":
            pos = _bogus_comment_end(html, lt + 1)
        else:
            pos = lt + 1  # "<" before anything else is text
            continue
        if pos < 0:
            return Scan(found, False)


def _bogus_comment_end(html: str, pos: int) -> int:
    """After the ">" of a bogus comment or DOCTYPE (§13.2.5.41, §13.2.5.53); -1 at end of file."""
    gt = html.find(">", pos)
    return gt + 1 if gt >= 0 else -1


def _comment_end(html: str, pos: int) -> int:
    """After a comment whose "<!--" ends at `pos` (§13.2.5.43-52): "<!-->" and "<!--->" end at once,
    otherwise the first "-->" or "--!>"; -1 at end of file."""
    if html.startswith(">", pos):
        return pos + 1
    if html.startswith("->", pos):
        return pos + 2
    ends = [i + len(mark) for mark in ("-->", "--!>") if (i := html.find(mark, pos)) >= 0]
    return min(ends) if ends else -1


def _read_tag(html: str, lt: int, name_at: int, *, closing: bool, names: Collection[str],
              found: list[Tag]) -> tuple[int, str] | None:
    """Read one tag from its name to its ">" (§13.2.5.8 and §13.2.5.32-40): (offset after it, its name),
    or None when the file ends inside it. Tags named in `names` are added to `found`."""
    n = len(html)
    match = _TAG_NAME.match(html, name_at)
    assert match is not None
    name = _lower(match.group())
    wanted = name in names
    pos = match.end()
    attributes: list[Attribute] = []
    seen: set[str] = set()
    while True:
        pos = _skip(_BEFORE_ATTRIBUTE, html, pos)
        if pos >= n:
            return None
        if html[pos] == ">":
            pos += 1
            break
        match = _ATTRIBUTE_NAME.match(html, pos)
        assert match is not None
        attribute = match.group()
        pos = match.end()
        after_name = _skip(_SPACES, html, pos)
        start = end = pos
        quote = ""
        if after_name < n and html[after_name] == "=":
            at = _skip(_SPACES, html, after_name + 1)
            if at >= n:
                return None
            first = html[at]
            if first in "\"'":
                close = html.find(first, at + 1)
                if close < 0:
                    return None  # the value runs to the end of the file: so does the tag
                start, end, quote, pos = at + 1, close, first, close + 1
            elif first == ">":
                start = end = pos = at  # "href=>": an empty value, and the tag ends here
            else:
                value = _UNQUOTED_VALUE.match(html, at)
                assert value is not None
                start, end, pos = at, value.end(), value.end()
        if wanted:
            lowered = _lower(attribute)
            if lowered not in seen:
                seen.add(lowered)
                attributes.append(Attribute(lowered, start, end, quote))
    if wanted:
        found.append(Tag(name, lt, pos, closing, tuple(attributes)))
    return pos, name


def _is_end_tag(html: str, lt: int, name: str) -> bool:
    """Whether `</name` at `lt` is an "appropriate end tag" (§13.2.5.11): followed by space, "/" or ">"."""
    after = lt + 2 + len(name)
    return (html.startswith("</", lt) and _lower(html[lt + 2:after]) == name and after < len(html)
            and html[after] in "\t\n\f\r />")


def _text_end(html: str, pos: int, name: str) -> int:
    """Where the end tag of an RCDATA/RAWTEXT element starts (§13.2.5.2-3, 9-14); -1 at end of file."""
    while True:
        lt = html.find("</", pos)
        if lt < 0:
            return -1
        if _is_end_tag(html, lt, name):
            return lt
        pos = lt + 2


# Script data states (§13.2.5.4, §13.2.5.15-31): an escaped script ("<!--" inside <script>) still ends
# at "</script>", but after a "<script" inside the escape it does not, until "</script" or "-->".
_DATA, _ESCAPED, _ESCAPED_DASH, _ESCAPED_DASH_DASH = 0, 1, 2, 3
_DOUBLE, _DOUBLE_DASH, _DOUBLE_DASH_DASH = 4, 5, 6


def _letters_then_delimiter(html: str, pos: int) -> tuple[str, int, bool]:
    """The ASCII letters from `pos` (lower-cased), where they stop, and whether a space, "/" or ">" follows."""
    end = pos
    while end < len(html) and html[end].isascii() and html[end].isalpha():
        end += 1
    return _lower(html[pos:end]), end, end < len(html) and html[end] in "\t\n\f\r />"


def _script_end(html: str, pos: int) -> int:
    """Where the `</script` that ends a script element starts; -1 at end of file."""
    n = len(html)
    state = _DATA
    i = pos
    while i < n:
        if state == _DATA:
            lt = html.find("<", i)
            if lt < 0:
                return -1
            if _is_end_tag(html, lt, "script"):
                return lt
            if html.startswith("<!--", lt):
                state, i = _ESCAPED_DASH_DASH, lt + 4
            else:
                i = lt + 1
            continue
        c = html[i]
        if state in (_ESCAPED, _ESCAPED_DASH, _ESCAPED_DASH_DASH):
            if c == "<":
                nxt = html[i + 1] if i + 1 < n else ""
                if nxt == "/":
                    if _is_end_tag(html, i, "script"):
                        return i
                    state, i = _ESCAPED, i + 2
                    continue
                if nxt.isascii() and nxt.isalpha():
                    letters, end, delimited = _letters_then_delimiter(html, i + 1)
                    if delimited:
                        state, i = (_DOUBLE if letters == "script" else _ESCAPED), end + 1
                    else:
                        state, i = _ESCAPED, end
                    continue
                state, i = _ESCAPED, i + 1
                continue
            if c == "-":
                state = _ESCAPED_DASH if state == _ESCAPED else _ESCAPED_DASH_DASH
            elif c == ">" and state == _ESCAPED_DASH_DASH:
                state = _DATA
            else:
                state = _ESCAPED
            i += 1
            continue
        # double escaped
        if c == "<":
            if html.startswith("/", i + 1):
                letters, end, delimited = _letters_then_delimiter(html, i + 2)
                if delimited:
                    state, i = (_ESCAPED if letters == "script" else _DOUBLE), end + 1
                else:
                    state, i = _DOUBLE, end
                continue
            state, i = _DOUBLE, i + 1
            continue
        if c == "-":
            state = _DOUBLE_DASH if state == _DOUBLE else _DOUBLE_DASH_DASH
        elif c == ">" and state == _DOUBLE_DASH_DASH:
            state = _DATA
        else:
            state = _DOUBLE
        i += 1
    return -1
