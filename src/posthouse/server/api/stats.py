"""The stats routes: `/stats/outbound` and its breakdowns, Postmark's shapes (docs/postmark-api.md §6)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SERVER, ServerCall
from posthouse.server.api.payloads import json_response
from posthouse.server.api.routing import Query, Route
from posthouse.server.services.stats import SERIES, parse_stats_day
from posthouse.server.store.stats import StatsFilter


def _filters(call: ServerCall) -> StatsFilter:
    query = Query(call.request)
    # Without `messagestream` every stream counts (Postmark's rule for stats); an absent tag, every tag.
    return StatsFilter(from_day=parse_stats_day(query.get("fromdate")), to_day=parse_stats_day(query.get("todate")),
                       stream=query.get("messagestream"), tag=query.get("tag"))


async def overview(call: ServerCall) -> Response:
    return json_response(await call.state.stats.overview(call.server.id, _filters(call)))


def _series(name: str) -> Callable[[ServerCall], Awaitable[Response]]:
    async def handler(call: ServerCall) -> Response:
        answer = await call.state.stats.series(call.server.id, name, _filters(call))
        return json_response(wire.usage_to_json(answer) if isinstance(answer, wire.UsageCounts) else answer)

    handler.__name__ = handler.__qualname__ = "stats_" + name.replace("/", "_")
    return handler


ROUTES = (
    Route("GET", "/stats/outbound", overview, SERVER),
    *(Route("GET", f"/stats/outbound/{name}", _series(name), SERVER) for name in SERIES),
)
