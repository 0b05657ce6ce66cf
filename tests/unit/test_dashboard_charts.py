"""The statistics page's chart geometry (dashboard/charts.py): count axes of whole, round steps, bars in
proportion, a line that breaks on days without mail, date labels that do not crowd, and the words that describe
each chart."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.server.dashboard.charts import (
    BOTTOM,
    HEIGHT,
    LEFT,
    MAX_DATE_LABELS,
    MAX_STEPS,
    RIGHT,
    TOP,
    WIDTH,
    bar_chart,
    count_axis,
    rate_chart,
)


def days(n: int, first: date = date(2026, 5, 1)) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range(n)]


@pytest.mark.parametrize(("highest", "top", "step"), [
    (0, 1, 1), (1, 1, 1), (3, 3, 1), (4, 4, 1), (5, 5, 1), (6, 6, 2), (7, 8, 2), (10, 10, 2), (11, 15, 5),
    (26, 30, 10), (51, 60, 20), (199, 200, 50), (201, 250, 50), (999_999, 1_000_000, 200_000)])
def test_count_axis(highest: int, top: int, step: int) -> None:
    assert count_axis(highest) == (top, step)


@given(st.integers(min_value=0, max_value=10**12))
def test_a_count_axis_has_whole_steps_and_room_for_the_highest_day(highest: int) -> None:
    top, step = count_axis(highest)
    assert top >= highest and top % step == 0 and 1 <= top // step <= MAX_STEPS
    assert str(step).strip("0") in ("1", "2", "5")
    assert highest < 1 or top < highest + 2 * step  # no more than about a step of headroom


def test_bars_are_in_proportion_to_the_axis() -> None:
    chart = bar_chart("sends", "Sends per day", days(4), [0, 10, 5, 3], "sent")  # an axis of 0, 2, … 10
    baseline, plot = HEIGHT - BOTTOM, HEIGHT - TOP - BOTTOM
    zero, ten, five, three = chart.bars
    assert zero.height == 0 and zero.y == baseline
    assert ten.height == plot and ten.y == TOP  # 10 is the axis top
    assert five.height == plot / 2
    assert three.height == pytest.approx(plot * 0.3)
    assert [t.label for t in chart.y_ticks] == ["0", "2", "4", "6", "8", "10"]
    assert [b.label for b in chart.bars] == ["2026-05-01: 0 sent", "2026-05-02: 10 sent", "2026-05-03: 5 sent",
                                             "2026-05-04: 3 sent"]
    # The bars share the plot's width and stay inside it, in order.
    assert chart.bars[0].x >= LEFT and chart.bars[-1].x + chart.bars[-1].width <= WIDTH - RIGHT
    assert all(a.x + a.width < b.x for a, b in zip(chart.bars, chart.bars[1:], strict=False))
    assert chart.description == "Sends per day, 2026-05-01 to 2026-05-04: 18 sent in all; the most on 2026-05-02 (10)."


def test_a_quiet_range_says_none() -> None:
    chart = bar_chart("spam", "Spam complaints per day", days(30), [0] * 30, "spam complaints")
    assert chart.description == "Spam complaints per day, 2026-05-01 to 2026-05-30: none."
    assert all(b.height == 0 for b in chart.bars) and [t.label for t in chart.y_ticks][-1] == "1"


def test_the_rate_line_breaks_on_days_without_mail() -> None:
    chart = rate_chart("delivery", "Delivery rate per day", days(6), [100.0, 50.0, None, None, 75.0, 100.0],
                       "delivered")
    assert len(chart.lines) == 2
    assert [len(line.split()) for line in chart.lines] == [2, 2]
    assert [d.label for d in chart.dots] == ["2026-05-01: 100% delivered", "2026-05-02: 50% delivered",
                                             "2026-05-05: 75% delivered", "2026-05-06: 100% delivered"]
    assert chart.dots[0].y == TOP and chart.dots[1].y == TOP + (HEIGHT - TOP - BOTTOM) / 2
    assert chart.description == ("Delivery rate per day, 2026-05-01 to 2026-05-06: from 50% (2026-05-02) to 100% "
                                 "(2026-05-01), over the 4 days with mail sent.")
    assert rate_chart("d", "Rate", days(3), [None, None, None], "delivered").description.endswith("no mail was sent.")
    assert rate_chart("d", "Rate", days(3), [None, 80.0, None], "delivered").description.endswith(
        "from 80% (2026-05-02) to 80% (2026-05-02), over the 1 day with mail sent.")


@pytest.mark.parametrize("n", [1, 2, 7, 8, 30, 31, 90, 366])
def test_date_labels_do_not_crowd(n: int) -> None:
    chart = bar_chart("sends", "Sends", days(n), [1] * n, "sent")
    labels = chart.x_labels
    assert 1 <= len(labels) <= MAX_DATE_LABELS + 1
    assert labels[0].label == "05-01"
    positions = [t.at for t in labels]
    assert positions == sorted(positions) and all(LEFT <= x <= WIDTH - RIGHT for x in positions)
    assert len(chart.bars) == n
