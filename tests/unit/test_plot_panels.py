"""deploy/grafana/plot_panels.py: every dashboard panel has an evaluation, and the queries
compute what Prometheus would (rate over the window, sums by label, histogram_quantile)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "plot_panels", REPO / "deploy" / "grafana" / "plot_panels.py"
)
plot_panels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot_panels)


def labels(**values: str) -> tuple:
    return tuple(sorted(values.items()))


def test_every_panel_of_the_dashboard_has_an_evaluation() -> None:
    dashboard = json.loads(plot_panels.DASHBOARD.read_text())
    titles = {p["title"] for p in dashboard["panels"] if p.get("title")}
    assert titles == set(plot_panels.PANELS)


def test_rate_is_the_increase_over_the_window_per_second() -> None:
    ok = labels(route="/a", status="200")
    scrapes = [
        (0.0, {("mlflow_http_requests_total", ok): 100.0}),
        (10.0, {("mlflow_http_requests_total", ok): 150.0}),
        (20.0, {("mlflow_http_requests_total", ok): 150.0}),
    ]
    series = plot_panels.PANELS["Request rate by route"](scrapes)
    assert series["/a"] == [(10.0, 5.0), (20.0, 0.0)]


def test_error_ratio_splits_5xx_and_4xx() -> None:
    name = "mlflow_http_requests_total"
    before = {(name, labels(status="200")): 0.0, (name, labels(status="404")): 0.0}
    after = {
        (name, labels(status="200")): 70.0,
        (name, labels(status="404")): 20.0,
        (name, labels(status="503")): 10.0,
    }
    series = plot_panels.error_ratio([(0.0, before), (10.0, after)])
    assert series["5xx"] == [(10.0, pytest.approx(0.1))]
    assert series["4xx"] == [(10.0, pytest.approx(0.2))]


@pytest.mark.parametrize(("q", "expected"), [(0.5, 0.0625), (0.9, 0.55), (1.0, 1.0)])
def test_histogram_quantile_interpolates_within_the_bucket(q: float, expected: float) -> None:
    # 100 observations: 40 under 0.05 s, 80 under 0.1 s, 100 under 1 s. The median (rank 50)
    # is 10 of the 40 between 0.05 and 0.1 s; the 90th (rank 90) is 10 of the 20 in 0.1..1 s.
    buckets = {0.05: 40.0, 0.1: 80.0, 1.0: 100.0, math.inf: 100.0}
    assert plot_panels.histogram_quantile(q, buckets) == pytest.approx(expected)
