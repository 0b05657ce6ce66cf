"""CSS inlining of rendered HTML bodies (Postmark's `InlineCss`), the one place that uses css-inline."""

from __future__ import annotations

import logging
import re

import css_inline

log = logging.getLogger(__name__)

_STYLE_TAG = re.compile(r"<style\b", re.IGNORECASE)

# - keep_style_tags: rules that cannot be inlined (@media, :hover) still reach the clients that read <style>, as
#   PreMailer.Net (a .NET inliner, removeStyleElements=false by default) leaves them.
# - load_remote_stylesheets=False: a template must not make the server fetch URLs (SSRF, and a slow host would
#   stall sending); <link> tags stay in the HTML for the mail client to load.
_INLINER = css_inline.CSSInliner(keep_style_tags=True, keep_link_tags=True, load_remote_stylesheets=False)


def inline_css(html: str) -> str:
    """`html` with the rules of its <style> blocks copied into style attributes; run after rendering, never before
    (inlining a template would reorder markup around `{{#each}}` inside tables)."""
    if not _STYLE_TAG.search(html):
        return html  # nothing to inline: leave the markup exactly as rendered (no re-serialisation)
    try:
        return _INLINER.inline(html)
    except ValueError as error:  # css_inline.InlineError subclasses ValueError
        # Odd HTML or CSS must not stop a message: Postmark still sends when inlining fails, so send it as
        # rendered, un-inlined, and say so in the log.
        log.warning("CSS inlining failed, sending the HTML as rendered: %s", error)
        return html
