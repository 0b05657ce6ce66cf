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
from functools import lru_cache

# §13.2.5.1: after input preprocessing CR is LF, so CR counts as whitespace too.
_DELIMITER = "\t\n\f\r />"  # what ends a tag name (§13.2.5.8) and makes "</name" an end tag (§13.2.5.11)
# The rest of a tag, from after its name to after its ">" (§13.2.5.32-40): attributes (a name that may start
# with "=" or hold quotes, then maybe "=" and a quoted or unquoted value), spaces and "/" between them. Possessive
# quantifiers take a name, a value or a run of spaces whole, never split on backtracking, so the match is linear.
# It fails only where the tokenizer reaches the end of the file inside the tag (no ">", or a quoted value that
# never closes: a "=" is then neither followed by a value nor by nothing), and there the tag does not exist.
_TAG_REST = re.compile(r"""
    (?:
        [\t\n\f\r /]*+
        [^\t\n\f\r />][^\t\n\f\r /=>]*+
        (?: [\t\n\f\r ]*+ = [\t\n\f\r ]*+ (?: "[^"]*+" | '[^']*+' | (?!["'])[^\t\n\f\r >]*+ )
          | (?! [\t\n\f\r ]*+ = ) )
    )*+
    [\t\n\f\r /]*+ >""", re.X)
# One attribute of a tag that `_TAG_REST` took: its name, and its value double-quoted, single-quoted or unquoted.
_ATTRIBUTE = re.compile(r"""
    [\t\n\f\r /]*+
    ([^\t\n\f\r />][^\t\n\f\r /=>]*+)
    (?: [\t\n\f\r ]*+ = [\t\n\f\r ]*+ (?: "([^"]*+)" | '([^']*+)' | ([^\t\n\f\r >]*+) ) )?""", re.X)
# Where markup starts (§13.2.5.6): a tag ("<" or "</", then a letter: its name), a comment, a declaration or
# processing instruction, or "</" before anything else. A "<" before anything else is text.
_MARKUP = re.compile(r"<(?:(/?)([A-Za-z][^\t\n\f\r />]*+)|!--|!|\?|/)")

# Elements whose content the tree builder tells the tokenizer to read as text until their end tag
# (§13.2.6.4.4 / §13.2.6.4.7): RCDATA (character references decoded) or RAWTEXT; either way no tags.
_TEXT_ELEMENTS = frozenset({"title", "textarea", "style", "xmp", "iframe", "noembed", "noframes"})
_SWITCHING = _TEXT_ELEMENTS | {"script", "plaintext"}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@lru_cache(maxsize=16)
def _plain_run(starts: frozenset[str], ends: frozenset[str]) -> re.Pattern[str]:
    """A run of what a scan for `starts`/`ends` passes over, matched in one go: text, a "<" that is text, and
    whole tags that are neither asked for nor switch the tokenizer to reading text."""

    def not_named(names: frozenset[str]) -> str:
        if not names:
            return ""
        return "(?!(?i:" + "|".join(sorted(map(re.escape, names))) + r")[\t\n\f\r />])"

    tag = r"[A-Za-z][^\t\n\f\r />]*+(?:" + _TAG_REST.pattern + ")"
    return re.compile(
        r"(?:[^<]++|<(?![A-Za-z/!?])"
        + "|</" + not_named(ends) + tag
        + "|<" + not_named(starts | _SWITCHING) + tag
        + ")*+", re.X)


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


def _lower(text: str) -> str:
    # The tokenizer lower-cases ASCII letters only.
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def scan_tags(html: str, starts: Collection[str] = (), ends: Collection[str] = ()) -> Scan:
    """The start tags named in `starts`, with their attributes, and the end tags named in `ends` (names in
    lower case), in document order."""
    plain_run = _plain_run(frozenset(starts), frozenset(ends))
    found: list[Tag] = []
    n = len(html)
    pos = 0
    while True:
        run = plain_run.match(html, pos)
        pos = run.end() if run is not None else pos
        if pos >= n:
            return Scan(found, True)
        markup = _MARKUP.match(html, pos)
        if markup is None:  # a "<" before anything else is text (the run stops at one only at the end)
            pos += 1
            continue
        lt = pos
        raw_name = markup.group(2)
        if raw_name is not None:
            rest = _TAG_REST.match(html, markup.end())
            if rest is None:
                return Scan(found, False)  # the file ends inside the tag: it does not exist
            pos = rest.end()
            name = _lower(raw_name)
            if markup.group(1):
                if name in ends:
                    found.append(Tag(name, lt, pos, True, ()))
                continue
            if name in starts:
                found.append(Tag(name, lt, pos, False, _attributes(html, markup.end(), pos - 1)))
            if name in _TEXT_ELEMENTS:
                pos = _text_end(html, pos, name)
            elif name == "script":
                pos = _script_end(html, pos)
            elif name == "plaintext":
                return Scan(found, False)  # §13.2.5.7: the rest of the document is text
        else:
            kind = markup.group()
            if kind == "<!--":
                pos = _comment_end(html, lt + 4)
            elif kind == "</":
                after = html[lt + 2:lt + 3]
                if after == ">":
                    pos = lt + 3  # "</>" is dropped
                elif not after:
                    # "</" at the end is text, but what is appended would continue it ("</<img…>" is a comment).
                    return Scan(found, False)
                else:
                    pos = _bogus_comment_end(html, lt + 2)
            else:  # "<!" (DOCTYPE, CDATA outside foreign content, other declarations) or "<?"
                pos = _bogus_comment_end(html, lt + 2)
        if pos < 0:
            return Scan(found, False)


def _attributes(html: str, start: int, end: int) -> tuple[Attribute, ...]:
    """The attributes of a tag between its name and its ">" (the first of each name, §13.2.5.33)."""
    attributes: list[Attribute] = []
    seen: set[str] = set()
    for match in _ATTRIBUTE.finditer(html, start, end):
        name = _lower(match.group(1))
        if name in seen:
            continue
        seen.add(name)
        group = match.lastindex or 1  # 2, 3, 4: the value's group; 1: no value
        start, end = match.span(group)
        if group == 1:
            start = end
        attributes.append(Attribute(name, start, end, _QUOTES[group]))
    return tuple(attributes)


_QUOTES = {1: "", 2: '"', 3: "'", 4: ""}


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


def _is_end_tag(html: str, lt: int, name: str) -> bool:
    """Whether `</name` at `lt` is an "appropriate end tag" (§13.2.5.11): followed by space, "/" or ">"."""
    after = lt + 2 + len(name)
    return (html.startswith("</", lt) and _lower(html[lt + 2:after]) == name and after < len(html)
            and html[after] in _DELIMITER)


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
    return _lower(html[pos:end]), end, end < len(html) and html[end] in _DELIMITER


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
