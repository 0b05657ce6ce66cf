"""The dashboard's suppressions page over HTTP (httpx over ASGI, the real runtime, both databases): it lists what
the API's dump lists, finds by address and reason, suppresses by hand and reactivates with the API's rules
(docs/postmark-api.md §8.2) — a reactivated hard bounce's address is active again, a spam complaint's stays."""

from __future__ import annotations

import re
from typing import Any

from integration.dashboard_pages import element, operator, server_id, text_of
from integration.test_api_stats import record_bounce
from posthouse.server.domain.statuses import BounceType


async def dump(api: Any, stream: str = "outbound", **params: str) -> list[dict[str, Any]]:
    answer = await api.client.get(f"/message-streams/{stream}/suppressions/dump", params=params,
                                  headers=api.server_headers)
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["Suppressions"]
    return entries


def listed(page: str) -> list[tuple[str, str, str]]:
    """(address, reason, origin) of each row of the page's table."""
    rows = re.findall(r'<td class="address">(.*?)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>', page, re.S)
    return [(text_of(a), text_of(r), text_of(o)) for a, r, o in rows]


async def test_it_lists_finds_suppresses_and_reactivates(api: Any) -> None:
    csrf = await operator(api)
    sid = await server_id(api)
    base = f"/ui/servers/{sid}/streams/outbound/suppressions"
    await record_bounce(api, BounceType.HARD_BOUNCE, email="gone@example.com")
    await record_bounce(api, BounceType.SPAM_COMPLAINT, email="angry@example.com")
    await record_bounce(api, BounceType.HARD_BOUNCE, email="elsewhere@example.com", stream="broadcast")
    page = await api.client.get(base)
    assert page.status_code == 200, page.text
    assert sorted(listed(page.text)) == [("angry@example.com", "SpamComplaint", "Recipient"),
                                         ("gone@example.com", "HardBounce", "Recipient")]
    assert sorted(e["EmailAddress"] for e in await dump(api)) == ["angry@example.com", "gone@example.com"]
    # A spam complaint's suppression offers no way back; a hard bounce's does.
    assert 'aria-label="Reactivate gone@example.com"' in page.text
    assert 'aria-label="Reactivate angry@example.com"' not in page.text

    # Found by address (as typed, any case) and by reason; a reason that is none of Postmark's is said so.
    assert listed((await api.client.get(base, params={"email": "Gone@Example.com"})).text) == \
        [("gone@example.com", "HardBounce", "Recipient")]
    assert [a for a, _, _ in listed((await api.client.get(base, params={"reason": "spamcomplaint"})).text)] == \
        ["angry@example.com"]
    nothing = await api.client.get(base, params={"email": "nobody@example.com"})
    assert "No suppression matches." in nothing.text and listed(nothing.text) == []
    bad = await api.client.get(base, params={"reason": "Bored"})
    assert bad.status_code == 400 and "Invalid 'SuppressionReason'" in text_of(bad.text)

    # Suppressing by hand: Customer's ManualSuppression, in the API's dump too.
    added = await api.client.post(base, data={"csrf_token": csrf, "email": "Quiet@Example.com"})
    assert added.status_code == 303
    shown = await api.client.get(added.headers["location"])
    assert element(shown.text, "main").count("Quiet@Example.com is suppressed") == 1
    assert ("quiet@example.com", "ManualSuppression", "Customer") in listed(shown.text)
    assert {"EmailAddress": "quiet@example.com", "SuppressionReason": "ManualSuppression", "Origin": "Customer"} \
        .items() <= next(e for e in await dump(api) if e["EmailAddress"] == "quiet@example.com").items()
    refused = await api.client.post(base, data={"csrf_token": csrf, "email": "not an address"})
    assert refused.status_code == 400
    assert element(refused.text, "form-error") == "not an address: An invalid email address was provided."
    assert 'value="not an address"' in refused.text  # kept in the field to correct
    assert (await api.client.post(base, data={"csrf_token": csrf, "email": " "})).status_code == 400

    # Reactivating the hard bounce's address: gone from the page and the dump, its bounce active again.
    bounce = (await api.client.get("/bounces", params={"count": 10, "offset": 0, "emailfilter": "gone@example.com"},
                                   headers=api.server_headers)).json()["Bounces"][0]
    assert bounce["Inactive"] is True
    done = await api.client.post(base + "/reactivate", data={"csrf_token": csrf, "email": "gone@example.com"})
    assert done.status_code == 303
    after = await api.client.get(done.headers["location"])
    assert "gone@example.com is reactivated" in after.text
    assert "gone@example.com" not in [a for a, _, _ in listed(after.text)]
    assert "gone@example.com" not in [e["EmailAddress"] for e in await dump(api)]
    again = (await api.client.get(f"/bounces/{bounce['ID']}", headers=api.server_headers)).json()
    assert again["Inactive"] is False
    # An address that was not suppressed: nothing happens, and the page says so.
    absent = await api.client.post(base + "/reactivate", data={"csrf_token": csrf, "email": "gone@example.com"})
    assert "was not suppressed" in (await api.client.get(absent.headers["location"])).text
    # The spam complaint's cannot be lifted, even by a crafted form.
    spam = await api.client.post(base + "/reactivate", data={"csrf_token": csrf, "email": "angry@example.com"})
    assert spam.status_code == 400 and "spam complaint suppression cannot be deleted" in \
        element(spam.text, "form-error")
    assert "angry@example.com" in [e["EmailAddress"] for e in await dump(api)]

    # Each stream its own: the broadcast stream's suppression is on its page only.
    other = await api.client.get(f"/ui/servers/{sid}/streams/broadcast/suppressions")
    assert listed(other.text) == [("elsewhere@example.com", "HardBounce", "Recipient")]
    assert (await api.client.get(f"/ui/servers/{sid}/streams/nope/suppressions")).status_code == 404
