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
    # tests/e2e/test_official_clients_postmarker.py: postmarker 1.0's managers for features Posthouse lacks.
    "postmarker": {
        "test_stats": "Statistics (/stats/outbound and its breakdowns) are not in Posthouse yet (issue 13).",
        "test_opens": "Open tracking and /messages/outbound/opens are not in Posthouse yet (issue 13).",
        "test_inbound_messages": "Inbound processing (/messages/inbound) is not in Posthouse yet (issue 16).",
        "test_inbound_rule_triggers": "Inbound rule triggers (/triggers/inboundrules) are part of inbound, "
                                      "not in Posthouse yet (issue 16).",
        "test_tag_triggers": "Tag triggers (/triggers/tags, Postmark's legacy per-tag open tracking) are not in "
                             "Posthouse; open tracking itself is issue 13.",
        "test_domains": "Domains (/domains, account API) are not in Posthouse yet (issue 14).",
        "test_sender_signatures": "Sender signatures (/senders, account API) are not in Posthouse yet (issue 14).",
    },
    # tests/e2e/test_anymail.py: django-anymail's Postmark backend.
    "anymail": {
    },
}


def reason_for(suite: str, test_id: str) -> str | None:
    """Why `test_id` of `suite` is expected to fail, or None when it must pass."""
    return UNSUPPORTED[suite].get(test_id)
