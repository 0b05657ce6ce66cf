"""Link and open tracking in bodies: which links are tracked, byte-exact rewriting, the pixel, and back.

The tag scanner is checked against lexbor (a conforming HTML5 parser, through selectolax): on hypothesis-
generated messy HTML, the `<a href>` links it finds, with their decoded values, are the ones the parser's
document has, and after rewriting the parser sees the tracked URLs in their place and nothing else moved.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from posthouse.server.domain.html_tags import scan_tags
from posthouse.server.domain.links import (
    HTML,
    TEXT,
    UNTRACKED,
    LinkTable,
    TrackingChoice,
    attribute_value,
    choose_tracking,
    has_placeholders,
    is_trackable,
    pixel,
    track_bodies,
    track_html,
    track_text,
    tracked_url,
    untrack,
)
from posthouse.server.domain.tracking import MAX_LINKS, OPEN, placeholder

BASE = "https://track.example.com"


def parsed_links(html: str) -> list[str]:
    """What a browser's parser makes of `html`: the href of every <a href> element, in document order,
    each once (the parser clones an open <a> into later paragraphs; the clones repeat the same value)."""
    seen: list[str] = []
    for node in LexborHTMLParser(html).css("a[href]"):
        value = node.attributes.get("href") or ""
        if value not in seen:
            seen.append(value)
    return seen


def scanned_links(html: str) -> list[str]:
    found: list[str] = []
    for tag in scan_tags(html, starts=("a",)).tags:
        href = tag.attribute("href")
        if not tag.closing and href is not None:
            value = attribute_value(html[href.start:href.end])
            if value not in found:
                found.append(value)
    return found


# -- decisions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "server", "expected"), [
    ((None, None), (False, "None"), TrackingChoice(False, "None")),
    ((True, None), (False, "None"), TrackingChoice(True, "None")),
    ((False, None), (True, "None"), TrackingChoice(True, "None")),  # a server that tracks opens always does
    ((None, None), (True, "HtmlOnly"), TrackingChoice(True, "HtmlOnly")),
    ((None, "TextOnly"), (False, "HtmlAndText"), TrackingChoice(False, "TextOnly")),
    ((None, "None"), (False, "HtmlAndText"), TrackingChoice(False, "None")),  # the message's own None wins
    ((None, None), (False, "bogus"), TrackingChoice(False, "None")),
])
def test_tracking_follows_postmarks_rules(message: tuple[bool | None, str | None], server: tuple[bool, str],
                                          expected: TrackingChoice) -> None:
    assert choose_tracking(*message, server_opens=server[0], server_links=server[1]) == expected


@pytest.mark.parametrize(("url", "trackable"), [
    ("https://example.com/", True),
    ("HTTP://EXAMPLE.COM/a?b=c#d", True),
    ("http://127.0.0.1:8080/x", True),
    ("mailto:someone@example.com", False),
    ("tel:+15551234", False),
    ("#top", False),
    ("/relative/path", False),
    ("//example.com/protocol-relative", False),
    ("ftp://example.com/file", False),
    ("javascript:alert(1)", False),
    ("https://", False),
    ("https:///path-without-host", False),
    ("https://example.com/a b", False),  # not percent-encoded: skipped, as by Postmark
    ("https://example.com/\x07", False),
    ("https://exämple.com/", False),  # Unicode domains go as punycode
    ("https://example.com/{{ name }}", False),  # a template leftover
    ("https://example.com/" + "a" * 8000, False),
    ("https://[::1]:8080/", True),
    ("https://user@[2001:db8::7]/x", True),
    ("https://[::1/", False),
    ("https://::1]/", False),
    ("https://[example.com]/", False),  # only an IPv6 address goes in brackets
    ("https://[::1]x[/", False),
])
def test_which_urls_are_tracked(url: str, trackable: bool) -> None:
    assert is_trackable(url) is trackable


@given(st.text(alphabet=st.sampled_from(list("ab1:@/?#.%-_~")), max_size=20), st.sampled_from(["http", "HTTPS"]))
def test_the_host_check_agrees_with_urlsplit(rest: str, scheme: str) -> None:
    url = f"{scheme}://{rest}"
    try:
        expected = bool(urlsplit(url).hostname)
    except ValueError:
        expected = False
    assert is_trackable(url) is expected


# -- attribute values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    "https://x.example/?a=1&amp;b=2",
    "https://x.example/?a=1&copy=2",  # legacy reference followed by "=": kept in an attribute
    "https://x.example/?a=1&copy2",  # … or by a letter or digit
    "https://x.example/&copy;&copy &copy.",
    "&notit; &notin; &not &amp &AMP; &ampx &lt=1",
    "&#65;&#x42;&#X43&#0;&#x110000;&#xD800;&#128;&#x9F;&#;&#x;&#xZ",
    "&unknownentity; & &; &#38;amp;",
    "a\r\nb\rc\0d",
    "&NotNestedGreaterGreater;&ThickSpace;&CounterClockwiseContourIntegral;",
])
def test_attribute_values_decode_as_a_parser_decodes_them(raw: str) -> None:
    document = f'<a href="{raw}">x</a>'
    assert [attribute_value(raw)] == parsed_links(document)


# -- the scanner against the parser ----------------------------------------------------------------------------


@pytest.mark.parametrize("html", [
    '<a href="https://a.example/">x</a>',
    "<a href=https://a.example/>x</a>",
    "<A HREF='https://a.example/'>x</A>",
    '<a title="<a href=https://fake.example/>" href="https://real.example/">',
    '<a href="https://first.example/" href="https://second.example/">',  # a repeated attribute is dropped
    "<!-- <a href=https://in-comment.example/> --><a href=https://after.example/>",
    "<!--><a href=https://after-empty-comment.example/>",
    "<!---><a href=https://after-dash-comment.example/>",
    "<!-- x --!><a href=https://after-bang.example/>",
    "<!-- x -- ><a href=https://still-comment.example/> -->",
    "<?xml version='1.0'?><a href=https://after-pi.example/>",
    "<!DOCTYPE html><a href=https://after-doctype.example/>",
    "</ x><a href=https://after-bogus.example/>",
    "<script>var s = '<a href=https://in-script.example/>';</script><a href=https://after-script.example/>",
    "<script><!--<script></script><a href=https://double-escaped.example/></script><a href=https://ok.example/>",
    "<script><!-- </script><a href=https://after-escaped.example/>",
    "<script><!--<script></script></script><a href=https://after-double.example/>",
    "<script><!--x-><script></script><a href=https://single-dash.example/></script>",
    "<script><!--<scriptx></script><a href=https://not-double.example/>",
    "<style>a[href='<a href=https://in-style.example/>']{}</style>",
    "<title><a href=https://in-title.example/></title><textarea><a href=https://in-textarea.example/></textarea>",
    "<noscript><a href=https://in-noscript.example/></noscript>",
    "<xmp><a href=https://in-xmp.example/></xmp><iframe><a href=https://in-iframe.example/></iframe>",
    "<plaintext><a href=https://in-plaintext.example/>",
    '<a href="https://unterminated.example/>x</a>',
    "<a href=https://eof-in-tag.example/",
    "<a/href=https://slash.example/>",
    "<a href = 'https://spaces.example/' >",
    "<a =href=https://not-href.example/ href=https://href.example/>",
    '<a href="https://a.example/"href="https://b.example/">',
    "<a href=>x</a><a href>y</a>",
    "<table><a href=https://foster.example/></table>",
    "<p><a href=https://cloned.example/>one<p>two",
    "<a href=https://x.example/ data-pm-no-track>",
    "<a\nhref\n=\n'https://newlines.example/'\n>",
    "</title><a href=https://stray-end.example/>",
    "<title>x</titlex><a href=https://not-end.example/></title>",
])
def test_the_scanner_finds_the_links_the_parser_finds(html: str) -> None:
    assert scanned_links(html) == parsed_links(html)


_TEXT = st.text(alphabet=st.sampled_from(list("ab xy<>/=!?-'\"&;#\t\n\r\0")), max_size=12)
_VALUE_PIECES = st.sampled_from([
    "https://e.example/p", "?a=1", "&amp;", "&copy", "&copy=", "&copy;", "&#x41;", "&#0;", "&lt", "&notit;", "=",
    " ", "\t", "\n", "\r\n", "<", ">", "'", '"', "/", "{{x}}", "mailto:a@b", "#", "\0", "é",
])
_NAMES = st.sampled_from(["href", "HREF", "Href", "data-pm-no-track", "title", "x", '"q', "<b", "=h", "href/", "a"])
_SEPARATORS = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "/", " / ", "", "\f"])


@st.composite
def _attribute(draw: st.DrawFn) -> str:
    name = draw(_NAMES)
    value = "".join(draw(st.lists(_VALUE_PIECES, max_size=4)))
    form = draw(st.sampled_from(["double", "single", "unquoted", "none", "empty", "spaced", "open"]))
    if form == "double":
        return f'{name}="{value.replace(chr(34), "")}"'
    if form == "single":
        return f"{name}='{value.replace(chr(39), '')}'"
    if form == "unquoted":
        return f"{name}={value}"
    if form == "empty":
        return f"{name}="
    if form == "spaced":
        return f"{name} = \"{value.replace(chr(34), '')}\""
    if form == "open":
        return f'{name}="{value}'  # may never close
    return name


@st.composite
def _start_tag(draw: st.DrawFn, name: str) -> str:
    attributes = draw(st.lists(_attribute(), max_size=4))
    separators = draw(st.lists(_SEPARATORS, min_size=len(attributes) + 1, max_size=len(attributes) + 1))
    inner = "".join(sep + attribute for sep, attribute in zip(separators, attributes, strict=False))
    close = draw(st.sampled_from([">", " >", "/>", "", ">"]))
    return f"<{name}{inner}{separators[-1]}{close}"


_FIXED = st.sampled_from([
    "<p>", "</p>", "</a>", "<br/>", "<body>", "</body>", "</html>", "<img src=x>", "<div>", "</div>", "<table>",
    "<td>", "</table>", "<!-->", "<!--->", "<!--", "-->", "--!>", "<!-- c -->", "<?x?>", "<!DOCTYPE html>", "</ x>",
    "</>", "<![CDATA[x]]>", "<script>", "</script>", "<script><!--", "<style>", "</style>", "<title>",
    "</title>", "<textarea>", "</textarea>", "<xmp>", "</xmp>", "<iframe>", "</iframe>", "<noembed>",
    "</noembed>", "<noframes>", "</noframes>", "<noscript>", "</noscript>", "<plaintext>", "<select>",
    "</select>", "</SCRIPT >", "</Style/>", "<", "&", "<a", "</a",
])


_COMMENT = st.builds("".join, st.tuples(
    st.sampled_from(["<!--", "<!---", "<!"]), _TEXT,
    st.sampled_from(["-->", "--!>", "-- >", "--->", "->", "--", "", ">"])))
_SCRIPT = st.builds("".join, st.lists(st.sampled_from([
    "<script>", "<!--", "-->", "<script>", "</script>", "</script ", "<scriptx>", "</scriptx>", "-", "<", ">", "x",
    "<a href=s>"]), max_size=8))


@st.composite
def messy_html(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(st.one_of(_TEXT, _FIXED, _COMMENT, _SCRIPT, _start_tag("a"), _start_tag("A"),
                                     _start_tag("p")), max_size=14))
    html = "".join(pieces)
    lowered = html.lower()
    # Foreign content, templates and framesets are outside what the scanner follows (html_tags' docstring).
    assume(not any(word in lowered for word in ("<svg", "<math", "<template", "<frame")))
    return html


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(messy_html())
@example('<a href="x" href="y"><!-- <a href=z> --><script><!--<script></script><a href=w></script>')
def test_on_messy_html_the_scanner_agrees_with_the_parser(html: str) -> None:
    assert scanned_links(html) == parsed_links(html)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(messy_html(), st.booleans())
@example("</", True)
@example('</body><a href="https://e.example/p" >', True)
def test_tracking_changes_only_the_urls_and_the_parser_sees_them(html: str, opens: bool) -> None:
    table = LinkTable()
    tracked = track_html(html, base_url=BASE, table=table, add_pixel=opens)
    # Byte-exact: put back what each tracked link replaced, take the pixel out, and it is the same text.
    assert untrack(tracked.html, {link.link: link.written for link in table.links}) == html
    # What a parser makes of it: each tracked link's URL in place of the original, the others as they were.
    by_url = {link.url: tracked_url(BASE, link.link) for link in table.links}
    expected = [by_url.get(value.strip("\t\n\f\r "), value) for value in parsed_links(html)]
    assert [v for v in parsed_links(tracked.html) if v] == [v for v in dict.fromkeys(expected) if v]
    for link in table.links:
        assert is_trackable(link.url) and link.location == HTML
    if tracked.pixel:
        sources = [node.attributes.get("src") for node in LexborHTMLParser(tracked.html).css("img")]
        assert f"{BASE}/o/{placeholder(OPEN)}" in sources


# -- rewriting, by example -------------------------------------------------------------------------------------


def test_an_email_is_rewritten_in_place() -> None:
    html = ('<!DOCTYPE html>\n<html><head><title>Hi</title></head><body>\n'
            '<p>Read <a class="btn" href="https://example.com/post?id=1&amp;utm=mail">the post</a>,\n'
            "<a href='mailto:help@example.com'>write</a>, <a href=\"#top\">top</a>, "
            '<a data-pm-no-track href="https://example.com/unsubscribe">unsubscribe</a>.</p>\n'
            "<!-- <a href=\"https://example.com/hidden\"> -->\n</body></html>\n")
    table = LinkTable()
    tracked = track_html(html, base_url=BASE, table=table, add_pixel=True)
    assert tracked.html == html.replace(
        "https://example.com/post?id=1&amp;utm=mail", f"{BASE}/c/phtrk0001xxxxxxxxxxxxxxxxxxx").replace(
        "\n</body>", f"\n{pixel(BASE)}</body>")
    assert [(link.link, link.url, link.location, link.written) for link in table.links] == [
        (1, "https://example.com/post?id=1&utm=mail", HTML, "https://example.com/post?id=1&amp;utm=mail")]
    assert tracked.opted_out == {"https://example.com/unsubscribe"}
    assert tracked.pixel


@pytest.mark.parametrize(("html", "expected"), [
    ("<p>no body</p>", "<p>no body</p>{pixel}"),
    ("<body>x</body><p>after</p></body>", "<body>x{pixel}</body><p>after</p></body>"),
    ("<p>x<!-- </body> --></p></BODY >", "<p>x<!-- </body> --></p>{pixel}</BODY >"),
    ("<p>x</p><!-- unclosed", "<p>x</p><!-- unclosed"),  # appended, it would be inside the comment
    ('<a href="x', '<a href="x'),
    ("<script>if (a < b) {", "<script>if (a < b) {"),
    ("<p>x</", "<p>x</"),  # "</<img …>" would be a comment
    ("<p>x<", "<p>x<{pixel}"),
    ('</body><a href="https://a.example/">', '{pixel}</body><a href="https://track.example.com/c/{first}">'),
])
def test_the_pixel_goes_before_the_body_end_or_at_a_clean_end(html: str, expected: str) -> None:
    tracked = track_html(html, base_url=BASE, table=LinkTable(), add_pixel=True)
    assert tracked.html == expected.replace("{pixel}", pixel(BASE)).replace("{first}", placeholder(1))
    assert tracked.pixel is ("{pixel}" in expected)


def test_the_same_link_twice_in_a_body_has_one_number_and_each_body_its_own() -> None:
    html = '<a href="https://a.example/">1</a><a href="https://a.example/">2</a><a href="https://b.example/">3</a>'
    text = "See https://a.example/ and https://a.example/ again."
    result = track_bodies(html, text, TrackingChoice(False, "HtmlAndText"), BASE)
    assert [(link.link, link.url, link.location) for link in result.links] == [
        (1, "https://a.example/", HTML), (2, "https://b.example/", HTML), (3, "https://a.example/", TEXT)]
    assert result.html is not None and result.html.count(tracked_url(BASE, 1)) == 2
    assert result.text == f"See {tracked_url(BASE, 3)} and {tracked_url(BASE, 3)} again."
    assert not result.pixel


@pytest.mark.parametrize(("choice", "html_tracked", "text_tracked", "pixel_added"), [
    (TrackingChoice(True, "None"), False, False, True),
    (TrackingChoice(False, "HtmlOnly"), True, False, False),
    (TrackingChoice(False, "TextOnly"), False, True, False),
    (TrackingChoice(True, "HtmlAndText"), True, True, True),
    (UNTRACKED, False, False, False),
])
def test_each_tracklinks_value_tracks_its_bodies(choice: TrackingChoice, html_tracked: bool, text_tracked: bool,
                                                 pixel_added: bool) -> None:
    html, text = '<body><a href="https://a.example/">a</a></body>', "Go to https://a.example/ now"
    result = track_bodies(html, text, choice, BASE)
    assert (result.html != html) is (html_tracked or pixel_added)
    assert ("/c/phtrk" in (result.html or "")) is html_tracked
    assert (result.text != text) is text_tracked
    assert result.pixel is pixel_added


def test_a_text_only_message_gets_no_pixel() -> None:
    result = track_bodies(None, "Hello https://a.example/", TrackingChoice(True, "HtmlAndText"), BASE)
    assert not result.pixel and result.html is None
    assert result.text == f"Hello {tracked_url(BASE, 1)}"


def test_a_no_track_link_in_html_is_not_tracked_in_the_text_either() -> None:
    html = '<a data-pm-no-track href="https://private.example/reset?t=1">reset</a>'
    text = "Reset: https://private.example/reset?t=1 — or read https://blog.example/"
    result = track_bodies(html, text, TrackingChoice(False, "HtmlAndText"), BASE)
    assert result.html == html
    assert result.text == f"Reset: https://private.example/reset?t=1 — or read {tracked_url(BASE, 1)}"


@pytest.mark.parametrize(("text", "urls"), [
    ("Visit https://a.example/path.", ["https://a.example/path"]),
    ("(see https://a.example/x)", ["https://a.example/x"]),
    ("https://en.example/wiki/Foo_(bar) is it", ["https://en.example/wiki/Foo_(bar)"]),
    ("<https://a.example/?q=1&r=2>", ["https://a.example/?q=1&r=2"]),
    ('"https://a.example/"', ["https://a.example/"]),
    ("a https://a.example/, b http://b.example/!", ["https://a.example/", "http://b.example/"]),
    ("xhttps://glued.example/ mailto:x@y.example ftp://f.example/", []),
    ("HTTPS://UPPER.EXAMPLE/", ["HTTPS://UPPER.EXAMPLE/"]),
    ("https://é.example/ https:// https://ok.example/?x={{y}}", []),
    ("line\r\nhttps://a.example/\r\nnext", ["https://a.example/"]),
])
def test_urls_in_text(text: str, urls: list[str]) -> None:
    table = LinkTable()
    tracked = track_text(text, base_url=BASE, table=table)
    assert [link.url for link in table.links] == urls
    assert untrack(tracked, {link.link: link.written for link in table.links}) == text
    assert [m for m in re.findall(r"phtrk\d{4}x{19}", tracked)] == [placeholder(i + 1) for i in range(len(urls))]


def test_links_past_the_limit_stay_as_they_are() -> None:
    html = "".join(f'<a href="https://a.example/{i}">{i}</a>' for i in range(MAX_LINKS + 5))
    table = LinkTable()
    tracked = track_html(html, base_url=BASE, table=table, add_pixel=False)
    assert len(table.links) == MAX_LINKS
    assert tracked.html.endswith(''.join(f'<a href="https://a.example/{i}">{i}</a>'
                                         for i in range(MAX_LINKS, MAX_LINKS + 5)))


@pytest.mark.parametrize(("text", "found"), [
    ("plain", False), ("phtrk", False), (placeholder(3), True), (f"x {placeholder(0)} y", True),
    ("phtrk0001xxxxxxxxxxxxxxxxxx", False),
])
def test_text_that_already_looks_like_a_placeholder_is_noticed(text: str, found: bool) -> None:
    assert has_placeholders(text) is found


@given(st.text(), st.booleans())
def test_untracking_restores_any_text_or_html(text: str, is_html: bool) -> None:
    assume(not has_placeholders(text))
    table = LinkTable()
    if is_html:
        tracked = track_html(text, base_url=BASE, table=table, add_pixel=True).html
    else:
        tracked = track_text(text, base_url=BASE, table=table)
    assert untrack(tracked, {link.link: link.written for link in table.links}) == text
