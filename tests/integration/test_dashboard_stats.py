"""The dashboard's statistics page over HTTP (httpx over ASGI, the real runtime, both databases): its totals and
its day-by-day numbers are those `/stats/outbound…` answers for the same range, stream and tag; every chart has
its title and description; the filters (range, stream, tag) narrow it; a bad range is said next to the form."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from integration.dashboard_pages import element, operator, server_id, text_of
from integration.test_api_stats import record_bounce
from posthouse.server.domain.stats import Metric, StatKey
from posthouse.server.domain.statuses import BounceType
from posthouse.server.store.stats import bump_stats

TODAY = datetime.now(UTC).date()


async def send(api: Any, to: str, **fields: Any) -> None:
    answer = await api.client.post("/email", headers=api.server_headers, json={
        "From": "app@example.com", "To": to, "Subject": "Hi", "TextBody": "Hello", **fields})
    assert answer.status_code == 200, answer.text


async def bump(api: Any, days_ago: int, metric: str, value: int, *, stream: str = "outbound", tag: str = "") -> None:
    """A counter as the tracking recorder (opens, clicks) or an earlier day's sends left it."""
    key = StatKey(await server_id(api), (TODAY - timedelta(days=days_ago) - datetime(1970, 1, 1).date()).days,
                  stream, tag, metric)
    await api.runtime.store.transact(bump_stats([(key, value)]))


async def api_stats(api: Any, path: str, **params: str) -> Any:
    answer = await api.client.get(path, params=params, headers=api.server_headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def day_row(page: str, day: str) -> list[str]:
    """The cells of the day-by-day table's row for `day`."""
    found = re.search(rf'<tr[^>]*>\s*<th scope="row"><time datetime="{day}">.*?</tr>', page, re.S)
    assert found, f"no row for {day}"
    return [text_of(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", found.group(0), re.S)]


async def mail_of_a_week(api: Any) -> None:
    await send(api, "a@example.com, b@example.com", Tag="welcome")
    await send(api, "c@example.com")
    await send(api, "d@example.com", Tag="welcome", MessageStream="broadcast")
    await record_bounce(api, BounceType.HARD_BOUNCE, tag="welcome", email="gone@example.com")
    await record_bounce(api, BounceType.SPAM_COMPLAINT, email="angry@example.com")
    await bump(api, 0, Metric.OPENS, 4, tag="welcome")
    await bump(api, 0, Metric.UNIQUE_OPENS, 2, tag="welcome")
    await bump(api, 0, Metric.CLICKS, 3, tag="welcome")
    await bump(api, 0, Metric.UNIQUE_CLICKS, 1, tag="welcome")
    await bump(api, 3, Metric.SENT, 5)
    await bump(api, 40, Metric.SENT, 7)  # outside the default 30 days


async def test_the_page_shows_what_the_stats_api_answers(api: Any) -> None:
    await operator(api)
    await mail_of_a_week(api)
    sid = await server_id(api)
    answer = await api.client.get(f"/ui/servers/{sid}/streams/outbound/stats")
    assert answer.status_code == 200, answer.text
    page = answer.text
    start, end = (TODAY - timedelta(days=29)).isoformat(), TODAY.isoformat()
    overview = await api_stats(api, "/stats/outbound", fromdate=start, todate=end, messagestream="outbound")
    assert overview["Sent"] == 3 + 5 and overview["Bounced"] == 1 and overview["SpamComplaints"] == 1
    assert element(page, "total-sent") == "8"
    assert element(page, "total-bounced") == f"1 ({overview['BounceRate']}%)"
    assert element(page, "total-delivery") == f"{round(100 - overview['BounceRate'], 3)}%"
    assert element(page, "total-spam").startswith("1 ")
    assert element(page, "total-opens") == "4 (2 unique)"
    assert element(page, "total-clicks").startswith("3 ")
    # Every chart, each with its title and description for a screen reader; the numbers are in them.
    for key, title in (("sends", "Sends per day"), ("delivery", "Delivery rate per day"),
                       ("bounces", "Bounces per day"), ("spam", "Spam complaints per day"),
                       ("opens", "Opens per day"), ("clicks", "Clicks per day")):
        assert element(page, f"chart-{key}-title") == title
        assert f'aria-labelledby="chart-{key}-title chart-{key}-desc"' in page
    assert element(page, "chart-sends-desc") == (f"Sends per day, {start} to {end}: 8 sent in all; the most on "
                                                 f"{(TODAY - timedelta(days=3)).isoformat()} (5).")
    assert f"{end}: 3 sent" in page and f"{end}: 4 opens" in page and f"{end}: 1 bounced" in page
    assert page.count('<rect x=') == 30 * 5  # a bar a day in each of the five count charts
    # The table has every day of the range, newest first, with the API's numbers for it.
    sends = {d["Date"]: d["Sent"] for d in (await api_stats(api, "/stats/outbound/sends", fromdate=start,
                                                              todate=end, messagestream="outbound"))["Days"]}
    assert day_row(page, end) == [end, str(sends[end]), "66.667%", "1", "1", "4", "2", "3", "1"]
    three = (TODAY - timedelta(days=3)).isoformat()
    assert day_row(page, three)[:3] == [three, "5", "100.0%"]
    assert day_row(page, start)[1:3] == ["0", "—"]
    assert len(re.findall(r'<th scope="row">', page)) == 30


async def test_the_filters_narrow_it(api: Any) -> None:
    await operator(api)
    await mail_of_a_week(api)
    sid = await server_id(api)
    base = f"/ui/servers/{sid}/streams/outbound/stats"
    everything = await api.client.get(base, params={"messagestream": "all"})
    assert everything.status_code == 200
    assert element(everything.text, "total-sent") == "9"  # the broadcast stream's send too
    assert '<option value="all" selected>' in everything.text
    tagged = await api.client.get(base, params={"tag": "welcome"})
    assert element(tagged.text, "total-sent") == "2"
    assert element(tagged.text, "total-bounced").startswith("1 ")
    assert element(tagged.text, "total-spam").startswith("0 ")
    longer = await api.client.get(base, params={"fromdate": (TODAY - timedelta(days=45)).isoformat()})
    assert element(longer.text, "total-sent") == "15"
    assert len(re.findall(r'<th scope="row">', longer.text)) == 46
    one_day = await api.client.get(base, params={"fromdate": TODAY.isoformat(), "todate": TODAY.isoformat()})
    assert element(one_day.text, "total-sent") == "3"
    # Choosing another stream leads to its page, the other filters kept.
    other = await api.client.get(base, params={"messagestream": "broadcast", "tag": "welcome"})
    assert other.status_code == 303
    assert other.headers["location"] == f"/ui/servers/{sid}/streams/broadcast/stats?tag=welcome"
    broadcast = await api.client.get(other.headers["location"])
    assert element(broadcast.text, "total-sent") == "1"


async def test_a_range_it_cannot_show_is_said_next_to_the_form(api: Any) -> None:
    await operator(api)
    sid = await server_id(api)
    base = f"/ui/servers/{sid}/streams/outbound/stats"
    for params, said in (({"fromdate": "yesterday"}, "Invalid date: 'yesterday'"),
                         ({"fromdate": "2026-02-10", "todate": "2026-02-01"}, "ends (2026-02-01) before it starts"),
                         ({"fromdate": "2020-01-01", "todate": "2026-01-01"}, "at most 366 days")):
        answer = await api.client.get(base, params=params)
        assert answer.status_code == 400, params
        assert said in text_of(re.search(r'<p class="error" role="alert">(.*?)</p>', answer.text, re.S).group(1))  # type: ignore[union-attr]
        assert 'name="fromdate"' in answer.text  # the form is still there to correct it
    # An empty server: zeros, and charts that say so.
    empty = await api.client.get(base)
    assert element(empty.text, "total-sent") == "0" and element(empty.text, "total-delivery") == "—"
    assert element(empty.text, "chart-sends-desc").endswith(": none.")
    assert element(empty.text, "chart-delivery-desc").endswith(": no mail was sent.")
    assert (await api.client.get(f"/ui/servers/{sid}/streams/nosuchstream/stats")).status_code == 404
