"""The Grafana dashboard queries only metrics the service declares."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import mlflow_app.metrics  # noqa: F401  (declares the metrics)

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "mlflow-app-dashboard.json"


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def declared_series() -> set[str]:
    return {
        metric.name + suffix
        for metric in REGISTRY.collect()
        for suffix in SUFFIXES.get(metric.type, ("",))
    }


def test_every_dashboard_query_uses_a_declared_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    # A metric name is followed by a label matcher; `mlflow_version` inside `by (...)` is a label.
    used = {name for e in exprs for name in re.findall(r"\b(mlflow_[a-z_]+)\{", e)}
    assert used, "the dashboard queries nothing"
    assert used - declared_series() == set()
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("request rate", "error ratio", "p50", "p99", "store call", "readiness"):
        assert topic in titles
