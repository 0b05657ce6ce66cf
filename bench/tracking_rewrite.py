"""Link tracking at acceptance: rewriting a 16 KB HTML email with ~120 links, beside lexbor's parse of the same HTML.

The peer is selectolax's lexbor parser (C, HTML5-conforming), the obvious way to find links, on the same
document in the same run: parsing alone, then parsing, selecting `a[href]` and serialising the tree back
(what a parse-and-rewrite approach costs; its output is not byte-exact, which is why Posthouse does not
do that). Posthouse is timed rewriting the HTML in place (`track_html`: tag scan, link numbering, pixel),
and all of a message's tracking (`track_bodies`: HTML and text bodies), then the accept path for untracked
mail: `compose` with the server's tracking settings (both off) against `compose` without tracking, which
must cost about nothing. Last, what the delivery worker adds per tracked copy (`personalize`). Medians of
several rounds, microseconds per call.

    .venv/bin/python bench/tracking_rewrite.py [--calls 500] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "src"))
from harness import machine

from posthouse import wire
from posthouse.server.domain.addresses import Address
from posthouse.server.domain.links import LinkTable, TrackingChoice, TrackingSettings, track_bodies, track_html
from posthouse.server.domain.messages import compose
from posthouse.server.domain.mime import MessageContent, build_message
from posthouse.server.domain.tracking import personalize

BASE = "https://track.example.com"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def newsletter(links: int = 120) -> str:
    """A 16 KB newsletter: head with styles, a table layout, `links` links (some mailto/anchors/no-track),
    comments and an MSO conditional, like the HTML email builders write."""
    rows = []
    for i in range(links):
        if i % 20 == 19:
            href = f"mailto:team{i}@example.com"
        elif i % 30 == 29:
            href = "#top"
        else:
            href = f"https://shop.example.com/p/{i}?utm_source=mail&amp;utm_campaign=w{i % 7}"
        extra = " data-pm-no-track" if i % 40 == 39 else ""
        rows.append(f'<tr><td class="i"><a href="{href}"{extra} style="color:#1a73e8">Item {i}</a> — {i * 3}</td>'
                    "</tr>\n")
    html = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Weekly</title>\n"
            "<style>body{margin:0} .item{font-family:Arial,sans-serif;font-size:14px}</style>\n"
            "<!--[if mso]><style>.item{font-family:Arial}</style><![endif]-->\n</head>\n"
            '<body><table width="100%" cellpadding="0" cellspacing="0" role="presentation">\n'
            + "".join(rows) + "</table>\n<!-- footer -->\n<p>You get this because you subscribed.</p>\n"
            "</body></html>\n")
    return html


def time_round(call: Callable[[], object], calls: int) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - began) / calls * 1e6


def median(call: Callable[[], object], calls: int, rounds: int) -> float:
    call()  # warm up
    return statistics.median(time_round(call, calls) for _ in range(rounds))


def medians(calls_of: list[Callable[[], object]], calls: int, rounds: int) -> list[float]:
    """Medians of rounds that take turns (A B C A B C …), so that a noisy moment on the shared machine
    falls on all of them alike: for differences of a few microseconds."""
    for call in calls_of:
        call()
    samples: list[list[float]] = [[] for _ in calls_of]
    for _ in range(rounds):
        for sample, call in zip(samples, calls_of, strict=True):
            sample.append(time_round(call, calls))
    return [statistics.median(sample) for sample in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (at least 5)")
    args = parser.parse_args()
    rounds = max(args.rounds, 5)
    html = newsletter()
    text = "\n".join(f"Item {i}: https://shop.example.com/p/{i}?utm_source=mail" for i in range(60))
    peer_links = len(LexborHTMLParser(html).css("a[href]"))
    table = LinkTable()
    ours = track_html(html, base_url=BASE, table=table, add_pixel=True)
    print(f"Machine: {machine()}")
    print(f"HTML: {len(html.encode()) / 1024:.1f} KB, {peer_links} <a href> (lexbor), {len(table.links)} tracked "
          f"(the rest mailto, anchors, data-pm-no-track); rewritten: {len(ours.html.encode()) / 1024:.1f} KB\n")

    def rewrite() -> object:
        return track_html(html, base_url=BASE, table=LinkTable(), add_pixel=True)

    def both_bodies() -> object:
        return track_bodies(html, text, TrackingChoice(True, "HtmlAndText"), BASE)

    def lexbor_parse() -> object:
        return LexborHTMLParser(html)

    def lexbor_rewrite() -> object:
        tree = LexborHTMLParser(html)
        for node in tree.css("a[href]"):
            node.attrs["href"] = BASE + "/c/x"
        return tree.html

    rows = [
        ("track_html: 16 KB, 120 links, pixel (Posthouse)", median(rewrite, args.calls, rounds)),
        ("track_bodies: HTML + 60-link text (Posthouse)", median(both_bodies, args.calls, rounds)),
        ("lexbor parse only (selectolax, peer)", median(lexbor_parse, args.calls, rounds)),
        ("lexbor parse + set a[href] + serialise (peer)", median(lexbor_rewrite, args.calls, rounds)),
    ]
    print("| scenario | median µs per call |\n|---|---:|")
    for name, micros in rows:
        print(f"| {name} | {micros:,.1f} |")

    request = wire.EmailRequest(sender="shop@example.com", to="ann@example.com", subject="Weekly", html_body=html,
                                text_body=text)
    off = TrackingSettings(BASE, opens=False, links="None")
    on = TrackingSettings(BASE, opens=True, links="HtmlAndText")
    plain, untracked = medians([lambda: compose(request, now=NOW), lambda: compose(request, now=NOW, tracking=off)],
                               args.calls, rounds * 3)
    tracked = median(lambda: compose(request, now=NOW, tracking=on), args.calls, rounds)
    print("\nAccept path (`compose`: validation and MIME), same request:\n")
    print("| scenario | median µs per message |\n|---|---:|")
    print(f"| compose, no tracking settings (as before tracking) | {plain:,.1f} |")
    print(f"| compose, server and message untracked | {untracked:,.1f} ({untracked - plain:+.1f}) |")
    print(f"| compose, opens and HtmlAndText links | {tracked:,.1f} |")

    content = build_message(MessageContent(message_id="<m@x>", date=NOW, sender=Address("shop@example.com"),
                                           to=[Address("ann@example.com")], html_body=ours.html))
    untracked_content = build_message(MessageContent(message_id="<m@x>", date=NOW, sender=Address("shop@example.com"),
                                                     to=[Address("ann@example.com")], html_body=html))
    key = bytes(range(32))
    per_copy = median(lambda: personalize(content, key, 123456), args.calls, rounds)
    untouched = median(lambda: personalize(untracked_content, key, 123456), args.calls, rounds)
    print("\nDelivery worker, per copy:\n")
    print("| scenario | median µs per copy |\n|---|---:|")
    print(f"| personalize a tracked 16 KB message ({len(table.links) + 1} placeholders) | {per_copy:,.1f} |")
    print(f"| personalize untracked content (the `phtrk` check only) | {untouched:,.2f} |")


if __name__ == "__main__":
    main()
