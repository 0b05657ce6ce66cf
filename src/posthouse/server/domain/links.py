"""Link and open tracking in a message's bodies: which links are tracked, how they are rewritten, and back.

At acceptance (docs/architecture.md §2) a tracked message's `<a href>` links to http(s) URLs in the HTML
body, and the http(s) URLs in the text body (TrackLinks HtmlAndText/TextOnly), become
`{base}/c/{placeholder(n)}`; with open tracking a 1×1 image `{base}/o/{placeholder(0)}` goes before
`</body>` (at the end without one). Links are numbered from 1 in the order met, HTML first, one number
per distinct link text in each body, so a click names the body it came from (Postmark's ClickLocation).
Only the URLs change: every other character of the HTML is kept as written (`html_tags` finds the tags
in place, nothing is re-serialised). The delivery worker swaps the placeholders for each recipient's
tokens (`tracking.personalize`).

Left alone, as by Postmark: links with the `data-pm-no-track` attribute (and the same URL in the text
body, which Postmark's documentation says the attribute covers too), `mailto:`, `tel:`, anchors and
relative links, and malformed ones. Postmark asks for URLs percent-encoded and skips the rest; here a URL
is tracked only if it is printable ASCII without spaces, with a host, no longer than `MAX_URL`, and
without a `{{`/`}}` left over from a template, since the tracking listener redirects to it verbatim.

`untrack` turns tracked content back into what the sender wrote, for the message's details and dump
(Postmark hides the pixel from the raw source so that viewing it cannot count as an open).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from html.entities import html5 as _ENTITIES

from posthouse.server.domain.html_tags import scan_tags
from posthouse.server.domain.mime_parts import replace_parts, text_parts
from posthouse.server.domain.statuses import TRACK_LINKS_VALUES
from posthouse.server.domain.tracking import MAX_LINKS, OPEN, placeholder

HTML = "HTML"  # Postmark's ClickLocation values
TEXT = "Text"
NO_TRACK = "data-pm-no-track"
MAX_URL = 8000
_MAX_ENTITY = max(map(len, _ENTITIES))

# The tracking base URL as `tracking_base_url` allows it (config.py checks it): characters that need no
# escaping in HTML, in a quoted-printable line, or in a URL. What `untrack` recognises as one.
_BASE_CHARS = r"A-Za-z0-9._~%:/\[\]-"
BASE_URL = re.compile(rf"https?://[{_BASE_CHARS}]+")
_PIXEL_BEFORE = '<img src="'
_PIXEL_AFTER = '" width="1" height="1" alt="" style="width:1px;height:1px;border:0;margin:0;padding:0" />'
_TRACKED = re.compile(rf"https?://[{_BASE_CHARS}]*?/c/phtrk([0-9]{{4}})x{{19}}")
_PIXEL = re.compile(re.escape(_PIXEL_BEFORE) + rf"https?://[{_BASE_CHARS}]*?/o/phtrk0000x{{19}}"
                    + re.escape(_PIXEL_AFTER))
# A URL in plain text: a run of printable ASCII other than space, '"', "<" and ">", not glued to a word
# before it; closing punctuation at its end belongs to the sentence, unless the URL opened it.
_TEXT_URL = re.compile(r"(?<![A-Za-z0-9])https?://[!#-;=?-~]+", re.I)
_TRAILING = ".,;:!?'*"
_PAIRS = {")": "(", "]": "[", "}": "{"}
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_AUTHORITY_END = re.compile(r"[/?#]")
_PLACEHOLDER = re.compile(r"phtrk[0-9]{4}x{19}")  # tracking.PLACEHOLDER, in text
_STRIP = "\t\n\f\r "


@dataclass(frozen=True, slots=True)
class TrackedLink:
    """Link `link` of a message: the URL a click goes to, the body it is in (HTML or Text), and the text it
    replaced when that differs from the URL (character references, spaces inside the quotes)."""

    link: int
    url: str
    location: str
    written: str

    @property
    def written_if_different(self) -> str | None:
        return self.written if self.written != self.url else None


@dataclass(slots=True)
class LinkTable:
    """The links of one message, numbered as they are met; full at `MAX_LINKS` (the rest stay untracked)."""

    links: list[TrackedLink] = field(default_factory=list)
    _numbers: dict[tuple[str, str], int] = field(default_factory=dict)

    def number(self, url: str, location: str, written: str) -> int | None:
        key = (location, written)
        found = self._numbers.get(key)
        if found is None:
            if len(self.links) >= MAX_LINKS:
                return None
            found = self._numbers[key] = len(self.links) + 1
            self.links.append(TrackedLink(found, url, location, written))
        return found


@dataclass(frozen=True, slots=True)
class TrackingSettings:
    """What decides tracking for a server's messages: its TrackOpens and TrackLinks defaults, and the public
    base URL of the tracking listener (`tracking_base_url`, without a trailing "/")."""

    base_url: str
    opens: bool = False
    links: str = "None"


@dataclass(frozen=True, slots=True)
class TrackingChoice:
    """What to track in one message, after the server's defaults: opens, and links in which bodies."""

    opens: bool
    links: str  # None | HtmlAndText | HtmlOnly | TextOnly

    @property
    def html_links(self) -> bool:
        return self.links in ("HtmlAndText", "HtmlOnly")

    @property
    def text_links(self) -> bool:
        return self.links in ("HtmlAndText", "TextOnly")

    @property
    def any(self) -> bool:
        return self.opens or self.links != "None"


UNTRACKED = TrackingChoice(False, "None")


def choose_tracking(message_opens: bool | None, message_links: str | None, *, server_opens: bool,
                    server_links: str) -> TrackingChoice:
    """Postmark's rules: TrackOpens unset takes the server's setting, and a server that tracks opens tracks
    them whatever the message says (its documentation: "There is no way to disable open tracking on a
    per-email basis when the server's Open tracking setting is enabled"); TrackLinks unset takes the
    server's, a message's own value (None included) wins."""
    links = message_links if message_links is not None else server_links
    if links not in TRACK_LINKS_VALUES:
        links = "None"
    return TrackingChoice(bool(server_opens) or message_opens is True, links)


def is_trackable(url: str) -> bool:
    """An absolute http(s) URL Postmark would track (see the module docstring)."""
    if len(url) > MAX_URL or not url.isascii() or _CONTROL_OR_SPACE.search(url):
        return False
    if "{{" in url or "}}" in url:
        return False
    head = url[:8].lower()
    if head.startswith("http://"):
        rest = url[7:]
    elif head.startswith("https://"):
        rest = url[8:]
    else:
        return False
    # The host, as urlsplit finds it: the authority up to "/", "?" or "#", after any "user@", before any port.
    authority = _AUTHORITY_END.split(rest, 1)[0]
    host = authority.rpartition("@")[2]
    if "[" not in authority and "]" not in authority:
        return bool(host.partition(":")[0])
    # An IP literal (RFC 3986 §3.2.2): only a well-formed IPv6 address between the brackets.
    literal, bracket, _ = host[1:].partition("]")
    if not host.startswith("[") or not bracket or authority.count("[") != 1 or authority.count("]") != 1:
        return False
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        return False
    return True


def tracked_url(base_url: str, link: int) -> str:
    return f"{base_url}/c/{placeholder(link)}"


def pixel(base_url: str) -> str:
    return f"{_PIXEL_BEFORE}{base_url}/o/{placeholder(OPEN)}{_PIXEL_AFTER}"


def has_placeholders(text: str) -> bool:
    """Whether text the sender wrote already looks like our placeholders (then the message goes untracked:
    the worker could not tell theirs from ours)."""
    return "phtrk" in text and _PLACEHOLDER.search(text) is not None


# -- HTML ------------------------------------------------------------------------------------------------------


def attribute_value(raw: str) -> str:
    """An attribute value as the tokenizer decodes it (WHATWG HTML §13.2.5.72-80): character references
    replaced, except a legacy named one without ";" followed by "=" or a letter or digit, which stays as
    written in an attribute (`?a=1&copy=2` keeps `&copy`). CR and CRLF read as LF, NUL as U+FFFD."""
    if "\r" in raw:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    if "\0" in raw:
        raw = raw.replace("\0", "\ufffd")
    if "&" not in raw:
        return raw
    out: list[str] = []
    pos = 0
    n = len(raw)
    while True:
        amp = raw.find("&", pos)
        if amp < 0:
            out.append(raw[pos:])
            return "".join(out)
        out.append(raw[pos:amp])
        replacement, end = _character_reference(raw, amp + 1, n)
        out.append(replacement)
        pos = end


def _character_reference(raw: str, pos: int, n: int) -> tuple[str, int]:
    """The text for a reference whose "&" is just before `pos`, and where the text after it resumes."""
    if pos < n and raw[pos] == "#":
        hexadecimal = pos + 1 < n and raw[pos + 1] in "xX"
        start = pos + 2 if hexadecimal else pos + 1
        end = start
        digits = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
        while end < n and raw[end] in digits:
            end += 1
        if end == start:
            return "&", pos  # no digits: not a reference
        number = int(raw[start:end], 16 if hexadecimal else 10)
        if end < n and raw[end] == ";":
            end += 1
        return _code_point(number), end
    end = pos
    while end < n and end - pos < _MAX_ENTITY and raw[end].isascii() and raw[end].isalnum():
        end += 1
    if end < n and raw[end] == ";" and end - pos < _MAX_ENTITY:
        end += 1
    for stop in range(end, pos, -1):
        name = raw[pos:stop]
        value = _ENTITIES.get(name)
        if value is None:
            continue
        if not name.endswith(";") and stop < n and (raw[stop] == "=" or (raw[stop].isascii() and raw[stop].isalnum())):
            return "&", pos  # §13.2.5.73: kept as written in an attribute, for old query strings
        return value, stop
    return "&", pos


# §13.2.5.80: numeric references to C1 controls mean the Windows-1252 characters.
_C1 = dict(zip(range(0x80, 0xA0), (
    "\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f"
    "\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178"), strict=True))


def _code_point(number: int) -> str:
    if number == 0 or number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
        return "\ufffd"
    return _C1.get(number) or chr(number)


@dataclass(slots=True)
class TrackedHtml:
    html: str
    opted_out: set[str]  # URLs of links marked data-pm-no-track
    pixel: bool


def track_html(html: str, *, base_url: str, table: LinkTable | None, add_pixel: bool) -> TrackedHtml:
    """The HTML with its trackable links rewritten (when `table` is given, numbering into it) and the
    pixel added (when asked for and there is a place for it)."""
    scan = scan_tags(html, starts=("a",), ends=("body",))
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), in document order
    opted_out: set[str] = set()
    pixel_at = -1
    for tag in scan.tags:
        if tag.closing:  # </body>: the first one takes the pixel
            if pixel_at < 0 and add_pixel:
                pixel_at = tag.start
                edits.append((pixel_at, pixel_at, pixel(base_url)))
            continue
        href = tag.attribute("href")
        if href is None or href.start == href.end:
            continue
        written = html[href.start:href.end]
        url = attribute_value(written).strip(_STRIP)
        if tag.attribute(NO_TRACK) is not None:
            opted_out.add(url)
            continue
        if table is None or not is_trackable(url):
            continue
        link = table.number(url, HTML, written)
        if link is not None:
            edits.append((href.start, href.end, tracked_url(base_url, link)))
    if add_pixel and pixel_at < 0 and scan.complete:
        # No </body>: at the end, if the end is in the data state (appended after an unclosed comment or
        # attribute it would be text, or break the markup).
        pixel_at = len(html)
        edits.append((pixel_at, pixel_at, pixel(base_url)))
    if not edits:
        return TrackedHtml(html, opted_out, False)
    pieces: list[str] = []
    pos = 0
    for start, end, replacement in edits:
        pieces += (html[pos:start], replacement)
        pos = end
    pieces.append(html[pos:])
    return TrackedHtml("".join(pieces), opted_out, pixel_at >= 0)


# -- text ------------------------------------------------------------------------------------------------------


def _text_url_end(text: str, start: int, end: int) -> int:
    """Where a URL found in text ends once the sentence's closing punctuation is left out."""
    while end > start:
        last = text[end - 1]
        unbalanced = last in _PAIRS and text.count(_PAIRS[last], start, end) < text.count(last, start, end)
        if last not in _TRAILING and not unbalanced:
            break
        end -= 1
    return end


def track_text(text: str, *, base_url: str, table: LinkTable, skip: Collection[str] = ()) -> str:
    """The text with its trackable URLs rewritten, numbering into `table`; URLs in `skip` stay."""
    if "://" not in text:
        return text
    pieces: list[str] = []
    pos = 0
    for match in _TEXT_URL.finditer(text):
        start = match.start()
        end = _text_url_end(text, start, match.end())
        url = text[start:end]
        if url in skip or not is_trackable(url):
            continue
        link = table.number(url, TEXT, url)
        if link is None:
            break
        pieces += (text[pos:start], tracked_url(base_url, link))
        pos = end
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


# -- both bodies -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TrackedBodies:
    html: str | None
    text: str | None
    links: list[TrackedLink]
    pixel: bool


def track_bodies(html: str | None, text: str | None, choice: TrackingChoice, base_url: str) -> TrackedBodies:
    """Both bodies of a message tracked as `choice` says, with the links numbered across them."""
    table = LinkTable()
    opted_out: set[str] = set()
    pixel_added = False
    if html is not None and (choice.opens or choice.html_links):
        tracked = track_html(html, base_url=base_url, table=table if choice.html_links else None,
                             add_pixel=choice.opens)
        html, opted_out, pixel_added = tracked.html, tracked.opted_out, tracked.pixel
    elif html is not None and choice.text_links:
        opted_out = track_html(html, base_url=base_url, table=None, add_pixel=False).opted_out
    if text is not None and choice.text_links:
        text = track_text(text, base_url=base_url, table=table, skip=opted_out)
    return TrackedBodies(html, text, table.links, pixel_added)


def untrack(content: str, written: Mapping[int, str]) -> str:
    """Tracked HTML or text as it was written: the pixel removed, each tracked URL back to the text it
    replaced (`written`, by link number; a number not in it stays as it is)."""
    if "phtrk" not in content:
        return content
    content = _PIXEL.sub("", content)

    def original(match: re.Match[str]) -> str:
        return written.get(int(match.group(1)), match.group(0))

    return _TRACKED.sub(original, content)


def written_texts(links: Sequence[TrackedLink]) -> dict[int, str]:
    return {link.link: link.written for link in links}


# -- whole messages (raw MIME) ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TrackedMessage:
    content: bytes
    links: list[TrackedLink]
    pixel: bool


def track_message(content: bytes, choice: TrackingChoice, base_url: str) -> TrackedMessage:
    """A MIME message (submitted over SMTP) with its text bodies tracked as `choice` says: HTML parts first
    (the pixel in the first that takes one), then text parts; attachments and everything else untouched."""
    parts = text_parts(content)
    table = LinkTable()
    opted_out: set[str] = set()
    pixel_added = False
    changes = []
    for part in parts:
        if part.subtype != "html":
            continue
        tracked = track_html(part.text, base_url=base_url, table=table if choice.html_links else None,
                             add_pixel=choice.opens and not pixel_added)
        opted_out |= tracked.opted_out
        pixel_added = pixel_added or tracked.pixel
        if tracked.html != part.text:
            changes.append((part, tracked.html))
    if choice.text_links:
        for part in parts:
            if part.subtype == "plain":
                text = track_text(part.text, base_url=base_url, table=table, skip=opted_out)
                if text != part.text:
                    changes.append((part, text))
    if not changes:
        return TrackedMessage(content, [], False)
    return TrackedMessage(replace_parts(content, changes), table.links, pixel_added)


def untrack_message(content: bytes, written: Mapping[int, str]) -> bytes:
    """Stored tracked content as the sender wrote it (see `untrack`); other bytes as they are."""
    if b"phtrk" not in content:
        return content
    changes = []
    for part in text_parts(content):
        original = untrack(part.text, written)
        if original != part.text:
            changes.append((part, original))
    return replace_parts(content, changes) if changes else content
