"""The one list of other people's tests that Posthouse is expected to fail, and why.

Each entry names a test of a client's own suite (postmark.js's integration tests, postmarker's and
django-anymail's surfaces as exercised here) that needs a Postmark feature Posthouse does not have
yet. Every entry must say which feature; the list shrinks as those features land (issue 13: stats,
opens and clicks; issue 14: domains and sender signatures; issue 16: inbound; …). A test listed here
that starts passing fails the run (strict xfail), so the list cannot go stale.
"""

from __future__ import annotations

# suite name -> {test id as the suite names it: reason}
UNSUPPORTED: dict[str, dict[str, str]] = {
    "postmark.js": {},
    "postmarker": {},
    "anymail": {},
}


def reason_for(suite: str, test_id: str) -> str | None:
    """Why `test_id` of `suite` is expected to fail, or None when it must pass."""
    return UNSUPPORTED[suite].get(test_id)
