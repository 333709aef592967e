"""The Grafana dashboard file is importable: valid JSON, unique panel ids, a
layout inside Grafana's 24 columns, every query on the dashboard's Prometheus
variable, every variable it uses defined."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "manifests" / "grafana" / "canary.json"
BUILTIN = {"__rate_interval", "__interval", "__range"}


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_the_grafana_dashboard_is_importable_and_every_panel_queries_prometheus() -> None:
    board = load()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    defined = {v["name"] for v in board["templating"]["list"]}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert "canary_" in target["expr"], target
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= defined | BUILTIN, (panel["title"], used)


def test_the_dashboard_covers_what_on_call_asks_of_it() -> None:
    exprs = " ".join(t["expr"] for p in load()["panels"] for t in p["targets"])
    for metric in (
        "canary_service_phase",
        "canary_weight_percent",
        "canary_analysis_measurements_total",
        "canary_analysis_value",
        "canary_decision_seconds_bucket",
        "canary_api_errors_total",
        "canary_leader",
    ):
        assert metric in exprs, metric
