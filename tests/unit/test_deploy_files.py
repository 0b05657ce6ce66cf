"""The files in deploy/ and the Dockerfile, checked with what runs here (no container engine does).

The Grafana dashboard may only query series the registry exports, with labels those series carry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from posthouse.server.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# A series name in PromQL: what our registry and prometheus-client's process collector export.
SERIES = re.compile(r"\b((?:posthouse|process|python)_[a-z0-9_]+)\b(\{[^}]*\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Labels Prometheus adds to every scraped series, and the histogram bucket's.
TARGET_LABELS = {"job", "instance"}


def _exported() -> dict[str, set[str]]:
    """Every sample name the registry writes, with its label names, after one observation of each kind (a
    labelled series has no sample before its first)."""
    m = Metrics()
    m.count_messages("accepted", "outbound")
    m.observe_delivered("outbound", 0.5)
    m.observe_attempt("relay", 0.01)
    m.observe_http("POST", "/email", 200, 0.002)
    m.observe_webhook_post("delivered", 0.05)
    m.observe_commit("sqlite", 3, 0.001)
    m.tracking_failures.inc()
    m.gauge_failures.inc()
    m.smtp.connections["accepted"] = 1
    m.smtp.commands[b"MAIL"] = 1
    m.smtp.replies[b"250"] = 1
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _dashboard() -> dict[str, Any]:
    loaded = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = _dashboard()
    assert dashboard["title"] == "Posthouse" and isinstance(dashboard["schemaVersion"], int)
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            # Every $variable an expression uses is defined (or Grafana's own).
            for name in re.findall(r"\$(\w+)", target["expr"]):
                assert name in variables or name.startswith("__"), (name, target["expr"])


def _problems(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """What is wrong with one PromQL expression: a series the registry does not export, a label matcher or a
    grouping label no series of the expression has."""
    series = SERIES.findall(expr)
    if not series:
        return [f"no Posthouse series in {expr!r}"]
    problems = []
    labels_of_expr = set(TARGET_LABELS)
    for name, selector in series:
        if name not in exported:
            problems.append(f"{name} is not exported")
            continue
        labels = exported[name] | TARGET_LABELS
        labels_of_expr |= labels
        problems.extend(f"{name} has no label {label!r}" for label in MATCHER.findall(selector) if label not in labels)
    for group in GROUPING.findall(expr):
        problems.extend(f"grouping by {label!r}, which no series has" for label in (g.strip() for g in group.split(","))
                        if label not in labels_of_expr)
    return problems


def test_every_dashboard_query_names_exported_series_and_their_labels() -> None:
    exported = _exported()
    expressions = _expressions(_dashboard())
    assert len(expressions) >= 20
    assert {expr: p for expr in expressions if (p := _problems(expr, exported))} == {}
    used = {name for expr in expressions for name, _ in SERIES.findall(expr)}
    # What issue 17 asks the dashboard to show.
    for wanted in ("posthouse_messages_total", "posthouse_queue_depth", "posthouse_queue_oldest_due_age_seconds",
                   "posthouse_delivery_latency_seconds_bucket", "posthouse_webhook_backlog",
                   "posthouse_store_write_queue_length", "posthouse_store_commit_duration_seconds_bucket",
                   "posthouse_http_requests_total", "posthouse_smtp_commands_total"):
        assert wanted in used, wanted


@pytest.mark.parametrize(("expr", "problem"), [
    ("sum(rate(posthouse_message_total[5m]))", "posthouse_message_total is not exported"),
    ('rate(posthouse_messages_total{transport="relay"}[5m])', "posthouse_messages_total has no label 'transport'"),
    ("sum by (route) (rate(posthouse_messages_total[5m]))", "grouping by 'route', which no series has"),
    ("vector(1)", "no Posthouse series in 'vector(1)'"),
])
def test_the_check_catches_a_wrong_query(expr: str, problem: str) -> None:
    assert _problems(expr, _exported()) == [problem]
    assert _problems('sum by (state, le) (rate(posthouse_messages_total{state="bounced"}[5m]))', _exported()) \
        == ["grouping by 'le', which no series has"]
    assert _problems("sum by (le) (rate(posthouse_delivery_latency_seconds_bucket[5m]))", _exported()) == []
