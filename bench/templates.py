"""Template rendering: our compiled Mustachio engine beside chevron (a pure-Python Mustache), same receipt, one run.

The receipt is a layout (with `{{{ @content }}}`) around a content template: `{{#each}}` over 20 line items,
escaped and raw values, sections and inverted sections. chevron has no layouts, so it renders the same page as one
template with the content pasted in. Before timing, the outputs are checked to be the same text, up to the two
known differences: chevron applies Mustache's standalone-line rule (so ours is checked with `standalone_lines=True`)
and leaves `'` unescaped (Mustachio writes `&#39;`). Our engine is timed the way Posthouse uses it: `compile_cached`
and `render_with_layout` on every message, in the default (Postmark) whitespace mode.

    .venv/bin/python bench/templates.py [--renders 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import chevron

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "src"))
from harness import machine

from posthouse.server.domain.templates import compile_cached, render_with_layout

LAYOUT = """<!DOCTYPE html>
<html>
<head>
  <meta name="viewport" content="width=device-width, initial-scale=1.0" />
  <title>{{ product_name }}</title>
  <style type="text/css">
    body { width: 100% !important; margin: 0; font-family: Arial, sans-serif; }
    .purchase_item { padding: 10px 0; color: #51545E; font-size: 15px; }
    .align-right { text-align: right; }
  </style>
</head>
<body>
  <span class="preheader">This is a receipt for your recent purchase on {{ date }}.</span>
  <table class="email-wrapper" width="100%" cellpadding="0" cellspacing="0" role="presentation">
    <tr><td class="email-masthead"><a href="{{ product_url }}" class="f-fallback">{{ product_name }}</a></td></tr>
    <tr><td class="email-body">{{{ @content }}}</td></tr>
    <tr><td class="email-footer">
      <p class="f-fallback sub align-center">&copy; 2026 {{ company.name }}. All rights reserved.</p>
      <p class="f-fallback sub align-center">{{ company.address }}</p>
    </td></tr>
  </table>
</body>
</html>
"""

CONTENT = """<h1>Hi {{ name }},</h1>
<p>Thanks for using {{ product_name }}. This email is the receipt for your purchase.</p>
{{#coupon}}<p class="coupon">Coupon {{ code }} saved you {{ amount }}.</p>{{/coupon}}
<table class="purchase" width="100%" cellpadding="0" cellspacing="0">
  <tr>
    <td><h3>{{ receipt_id }}</h3></td>
    <td><h3 class="align-right">{{ date }}</h3></td>
  </tr>
  {{#each receipt_details}}
  <tr>
    <td width="60%" class="purchase_item"><span class="f-fallback">{{ description }}</span>
      {{#note}}<br><i>{{{ note }}}</i>{{/note}}</td>
    <td class="align-right" width="20%">{{ quantity }}</td>
    <td class="align-right" width="20%" class="purchase_item"><span class="f-fallback">{{ amount }}</span></td>
  </tr>
  {{/each}}
  <tr>
    <td width="80%" class="purchase_footer" valign="middle"><p class="f-fallback">Total</p></td>
    <td width="20%" class="purchase_footer" valign="middle"><p class="f-fallback">{{ total }}</p></td>
  </tr>
</table>
{{^paid}}<p>Your payment is still pending.</p>{{/paid}}
<p>If you have any questions about this receipt, simply reply to this email or reach out to our
<a href="{{ support_url }}">support team</a> for help.</p>
<p>Cheers,<br>The {{ product_name }} team</p>
{{{ signature_html }}}
"""

MODEL = {
    "product_name": "Posthouse & Co",
    "product_url": "https://example.com/?a=1&b=2",
    "name": "Zoë <admin>",
    "date": "2026-11-28",
    "receipt_id": "R-000123",
    "total": "$1,234.00",
    "paid": False,
    "support_url": "https://example.com/support",
    "coupon": {"code": "WELCOME", "amount": "$10.00"},
    "company": {"name": 'Posthouse "Inc"', "address": "1 Main St, Springfield"},
    "signature_html": "<p><b>The team</b></p>",
    "receipt_details": [
        {
            "description": f"Item {n} <with> 'quotes' & ampersands",
            "quantity": n,
            "amount": f"${n * 3}.50",
            "note": "<b>gift</b>" if n % 5 == 0 else None,
        }
        for n in range(1, 21)
    ],
}


# The layout with the content pasted in, and `each` spelled as Mustache spells a list section. (chevron has no
# compile step: it tokenizes the template on every render, which is how it is used.)
CHEVRON_TEMPLATE = LAYOUT.replace(
    "{{{ @content }}}",
    CONTENT.replace("{{#each receipt_details}}", "{{#receipt_details}}").replace("{{/each}}", "{{/receipt_details}}"),
)


def chevron_render(model: dict[str, object]) -> str:
    return chevron.render(CHEVRON_TEMPLATE, model)


def posthouse_render(model: dict[str, object]) -> str:
    return render_with_layout(compile_cached(LAYOUT), compile_cached(CONTENT), model)


def time_round(render: Callable[[dict[str, object]], str], renders: int) -> float:
    """Microseconds per render over one round."""
    began = time.perf_counter()
    for _ in range(renders):
        render(MODEL)
    return (time.perf_counter() - began) / renders * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=2000, help="renders per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (at least 5)")
    args = parser.parse_args()
    rounds = max(args.rounds, 5)
    tidy = render_with_layout(
        compile_cached(LAYOUT, standalone_lines=True), compile_cached(CONTENT, standalone_lines=True), MODEL
    )
    if tidy.replace("&#39;", "'") != chevron_render(MODEL):
        raise SystemExit("the two engines disagree on the receipt; fix that before timing")
    # Interleave the engines round by round so drift in machine load hits both alike.
    posthouse_figures: list[float] = []
    chevron_figures: list[float] = []
    for _ in range(rounds):
        posthouse_figures.append(time_round(posthouse_render, args.renders))
        chevron_figures.append(time_round(chevron_render, args.renders // 5 or 1))
    ours = posthouse_render(MODEL)
    ours_median, theirs_median = statistics.median(posthouse_figures), statistics.median(chevron_figures)
    print(f"\nReceipt template ({len(ours):,} characters out, 20 line items), median of {rounds} rounds; {machine()}\n")
    print("| scenario | Posthouse | chevron 0.14 (same run) | ratio |")
    print("|---|---:|---:|---:|")
    print(
        f"| render layout + receipt | {ours_median:,.1f} µs | {theirs_median:,.1f} µs | "
        f"{theirs_median / ours_median:.1f}x faster |"
    )
    print(f"| renders per second, one core | {1e6 / ours_median:,.0f} | {1e6 / theirs_median:,.0f} | |")


if __name__ == "__main__":
    main()
