"""Charts as data for server-rendered SVG: a day-by-day series becomes bars (counts) or a line (a rate), with
a y axis of round numbers, date labels that do not crowd, and the words a screen reader reads instead
(the template `_chart.html` draws it; no JavaScript, no library).

Coordinates are in the SVG's own units (`WIDTH` × `HEIGHT`, scaled to the page by its viewBox), so a chart
reflows with the page down to a phone's width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 24  # the margins: the y labels on the left, dates below
MAX_DATE_LABELS = 7
MAX_STEPS = 5  # intervals of a count axis at most


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # what its tooltip says: "2026-05-01: 3 sent"


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # y (an axis tick) or x (a date label)
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    key: str  # for element ids: chart-<key>-title
    title: str
    description: str  # the chart in words: the range, the total, the highest day
    kind: str  # "bars" or "line"
    bars: tuple[Bar, ...]
    lines: tuple[str, ...]  # polyline points, one per run of days that have a value
    dots: tuple[Bar, ...]  # the line's points (x, y; width and height 0) with their tooltips
    y_ticks: tuple[Tick, ...]
    x_labels: tuple[Tick, ...]
    width: int = WIDTH
    height: int = HEIGHT
    baseline: float = HEIGHT - BOTTOM
    left: float = LEFT
    right: float = WIDTH - RIGHT


def count_axis(highest: float) -> tuple[int, int]:
    """(top, step) of a count axis: a step of 1, 2 or 5 × 10ⁿ, the smallest with at most `MAX_STEPS` steps up to
    a top at or above `highest` — so the ticks are whole numbers (0, 2, 4, 6), never 1.25 or 3.75."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            top = math.ceil(max(highest, 1) / (step * factor)) * step * factor
            if top // (step * factor) <= MAX_STEPS:
                return top, step * factor
        step *= 10


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _y(value: float, top: float) -> float:
    plot = HEIGHT - TOP - BOTTOM
    return round(HEIGHT - BOTTOM - plot * (value / top), 2)


def _date_labels(dates: Sequence[str], slot: float) -> tuple[Tick, ...]:
    if not dates:
        return ()
    every = max(1, math.ceil(len(dates) / MAX_DATE_LABELS))
    chosen = list(range(0, len(dates), every))
    if chosen[-1] != len(dates) - 1 and len(dates) - 1 - chosen[-1] >= every / 2:
        chosen.append(len(dates) - 1)
    return tuple(Tick(round(LEFT + slot * (i + 0.5), 2), dates[i][5:]) for i in chosen)


def _ticks(top: float, step: float, percent: bool) -> tuple[Tick, ...]:
    count = round(top / step)
    return tuple(Tick(_y(step * i, top), _number(step * i) + ("%" if percent else "")) for i in range(count + 1))


def _describe(title: str, dates: Sequence[str], values: Sequence[float | None], unit: str, percent: bool) -> str:
    if not dates:
        return f"{title}: no days in the range."
    span = f"{dates[0]} to {dates[-1]}"
    known = [(d, v) for d, v in zip(dates, values, strict=True) if v is not None]
    if not known or not any(v for _, v in known):
        return f"{title}, {span}: none." if not percent else f"{title}, {span}: no mail was sent."
    best_day, best = max(known, key=lambda pair: pair[1])
    if percent:
        worst_day, worst = min(known, key=lambda pair: pair[1])
        return (f"{title}, {span}: from {_number(worst)}% ({worst_day}) to {_number(best)}% ({best_day}), "
                f"over the {len(known)} day{'s' if len(known) != 1 else ''} with mail sent.")
    total = sum(v for _, v in known)
    return f"{title}, {span}: {_number(total)} {unit} in all; the most on {best_day} ({_number(best)})."


def bar_chart(key: str, title: str, dates: Sequence[str], values: Sequence[int], unit: str) -> Chart:
    """Counts per day as bars; the axis tops out at the next round number at or above the highest day."""
    top, step = count_axis(max(values, default=0))
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(dates))
    gap = min(4.0, slot * 0.2)
    bars = tuple(Bar(round(LEFT + slot * i + gap / 2, 2), _y(v, top), round(slot - gap, 2),
                     round(HEIGHT - BOTTOM - _y(v, top), 2), f"{d}: {_number(v)} {unit}")
                 for i, (d, v) in enumerate(zip(dates, values, strict=True)))
    return Chart(key, title, _describe(title, dates, values, unit, False), "bars", bars, (), (),
                 _ticks(top, step, False), _date_labels(dates, slot))


def rate_chart(key: str, title: str, dates: Sequence[str], values: Sequence[float | None], unit: str) -> Chart:
    """A percentage per day as a line on a 0–100 axis; a day without a value (no mail sent) breaks the line."""
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(dates))
    runs: list[list[str]] = [[]]
    dots: list[Bar] = []
    for i, (d, v) in enumerate(zip(dates, values, strict=True)):
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        x, y = round(LEFT + slot * (i + 0.5), 2), _y(v, 100.0)
        runs[-1].append(f"{x},{y}")
        dots.append(Bar(x, y, 0, 0, f"{d}: {_number(v)}% {unit}"))
    return Chart(key, title, _describe(title, dates, values, unit, True), "line", (),
                 tuple(" ".join(run) for run in runs if run), tuple(dots), _ticks(100.0, 25.0, True),
                 _date_labels(dates, slot))
