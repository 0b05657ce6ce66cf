"""The one list of other people's tests that Posthouse is expected to fail, and why.

Each entry names a test of a client's own suite (postmark.js's integration tests, postmarker's and
django-anymail's surfaces as exercised here) that needs a Postmark feature Posthouse does not have
yet. Every entry must say which feature; the list shrinks as those features land (issue 16: inbound; …;
issue 14's domains and sender signatures have left it). A test listed here
that starts passing fails the run (strict xfail), so the list cannot go stale.
"""

from __future__ import annotations

_INBOUND = "inbound: no /messages/inbound yet (issue 16)"
_TRIGGERS = "inbound rule triggers: no /triggers/inboundRules yet (issue 16)"
_DATA_REMOVALS = "data removals: no /data-removals yet (issue 17)"
# Postmark answered this test's archive of a stream it had just created with ErrorCode 1241 "Stream is unable to
# be archived at this time."; when Postmark refuses is not documented (postmark.js 4.x's own test, and the .NET
# client's, archive a new stream successfully), so Posthouse archives it, as the Message Streams API documents.
_ARCHIVE_REFUSAL = ("Postmark's refusal to archive a new stream (ErrorCode 1241), under a condition Postmark "
                    "does not document; Posthouse archives it")


def _named(reason: str, file: str, describe: str, *titles: str) -> dict[str, str]:
    return {f"{file} > {describe} > {title}": reason for title in titles}


# suite name -> {test id as the suite names it: reason}
UNSUPPORTED: dict[str, dict[str, str]] = {
    # ids are "file > describe > ... > title", as tests/contract/postmarkjs/reporter.js names them
    "postmark.js": {
        **_named(_INBOUND, "Messages.test.ts", "Client - Message Statistics", "getInboundMessages",
                 "getInboundMessageDetails"),
        **_named(_TRIGGERS, "Triggers.test.ts", "Client - Triggers", "createInboundRuleTrigger",
                 "getInboundRuleTriggers", "deleteInboundRuleTrigger"),
        **_named(_DATA_REMOVALS, "DataRemoval.test.ts", "DataRemoval", "createDataRemoval", "getDataRemoval"),
        **_named(_ARCHIVE_REFUSAL, "MessageStreams.test.ts", "Servers - Message Streams",
                 "archive message stream surfaces API errors"),
    },
    # tests/e2e/test_official_clients_postmarker.py: postmarker 1.0's managers for features Posthouse lacks.
    "postmarker": {
        "test_inbound_messages": "Inbound processing (/messages/inbound) is not in Posthouse yet (issue 16).",
        "test_inbound_rule_triggers": "Inbound rule triggers (/triggers/inboundrules) are part of inbound, "
                                      "not in Posthouse yet (issue 16).",
        "test_tag_triggers": "Tag triggers (/triggers/tags, Postmark's legacy per-tag open tracking) are not in "
                             "Posthouse; open tracking itself is issue 13.",
    },
    # tests/e2e/test_anymail.py: django-anymail's Postmark backend.
    "anymail": {
    },
}


def reason_for(suite: str, test_id: str) -> str | None:
    """Why `test_id` of `suite` is expected to fail, or None when it must pass."""
    return UNSUPPORTED[suite].get(test_id)
