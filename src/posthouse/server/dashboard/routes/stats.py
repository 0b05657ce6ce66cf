"""The statistics page: a server's sends, delivery rate, bounces, spam complaints, opens and clicks per day over
a date range, for one stream or every stream, one tag or every tag — as SVG charts drawn here and, for screen
readers and for copying, the same numbers in a table.

The numbers are the stats service's (the rollups behind `/stats/outbound…`, docs/postmark-api.md §6): the
totals are `/stats/outbound`'s overview, the days `StatsService.days` (the same counters a day at a time), so
the page and the API never disagree. Days are UTC days, as the API's are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from posthouse.server.dashboard.charts import Chart, bar_chart, rate_chart
from posthouse.server.dashboard.rendering import layout, render
from posthouse.server.dashboard.routes.scope import server_of, server_url, stream_of
from posthouse.server.dashboard.sessions import state_of
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.stats import DayTotals, stats_filter, stats_range

ALL_STREAMS = "all"  # no stream may be called that (services/accounts.py refuses the ID)
DEFAULT_DAYS = 30


def charts_of(days: list[DayTotals]) -> list[Chart]:
    dates = [d.date for d in days]
    return [
        bar_chart("sends", "Sends per day", dates, [d.sent for d in days], "sent"),
        rate_chart("delivery", "Delivery rate per day", dates, [d.delivery_rate for d in days], "delivered"),
        bar_chart("bounces", "Bounces per day", dates, [d.bounced for d in days], "bounced"),
        bar_chart("spam", "Spam complaints per day", dates, [d.spam_complaints for d in days], "spam complaints"),
        bar_chart("opens", "Opens per day", dates, [d.opens for d in days], "opens"),
        bar_chart("clicks", "Clicks per day", dates, [d.clicks for d in days], "clicks"),
    ]


async def stats_page(request: Request) -> Response:
    state = state_of(request)
    if state.stats is None:
        raise NotFoundError(0, "Statistics are not served here.", 404)
    service = state.stats
    server = await server_of(request)
    stream = await stream_of(request, server)
    q = request.query_params
    chosen = q.get("messagestream", stream).strip() or stream
    from_date, to_date, tag = q.get("fromdate", "").strip(), q.get("todate", "").strip(), q.get("tag", "").strip()
    streams = await state.accounts.streams(server.id)
    if chosen != ALL_STREAMS and chosen != stream and chosen in streams:
        # Another stream: its own page, as the stream picker leads there, with the other filters kept.
        rest = urlencode([(k, v) for k, v in (("fromdate", from_date), ("todate", to_date), ("tag", tag)) if v])
        return RedirectResponse(server_url(server.id, chosen, "stats") + (f"?{rest}" if rest else ""), 303)
    every_stream = chosen == ALL_STREAMS
    error, overview, days, start, end = None, None, [], None, None
    try:
        start, end = stats_range(from_date or None, to_date or None, today=datetime.now(UTC).date(),
                                 default_days=DEFAULT_DAYS)
        f = stats_filter(start, end, stream=None if every_stream else stream, tag=tag or None)
        overview = await service.overview(server.id, f)
        days = await service.days(server.id, f)
    except ApiError as exc:  # a date that is no date, a range backwards or too long: said next to the form
        error = exc.message
    context: dict[str, Any] = {
        "server_id": server.id, "stream_id": stream, "every_stream": every_stream, "stream_choices": [
            s for s in streams.values() if s.stream_type != "Inbound" and (s.archived_at is None or s.id == stream)],
        "from_date": from_date or (start.isoformat() if start else ""), "to_date": to_date or (
            end.isoformat() if end else ""), "tag": tag, "error": error, "overview": overview, "days": days,
        "charts": charts_of(days) if days else [], "base": server_url(server.id, stream, "stats"),
        "delivery_rate": round(100.0 - overview.bounce_rate, 3) if overview and overview.sent else None,
    }
    return render(request, "stats.html", {**await layout(request, server=server, stream=stream, view="stats"),
                                          **context}, status=400 if error else 200)


ROUTES = [
    Route("/ui/servers/{server_id}/streams/{stream}/stats", stats_page, methods=["GET"]),
]
