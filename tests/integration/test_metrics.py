"""Prometheus metrics from a real 2-worker gunicorn: exact counts, worker restarts, cardinality."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid

import pytest
import requests

from tests.service_process import Server, children_of

EXPERIMENT_GET = "/api/2.0/mlflow/experiments/get"


def scrape(server: Server, path: str = "/metrics") -> str:
    response = requests.get(server.url + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series, or 0 if absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape_settled(server: Server, name: str, expected: float, **labels: str) -> str:
    """Scrape until one series reaches `expected`, or stops short after a bounded wait.

    A request is counted when the server closes its response, a moment after the client has
    read the last byte, so a scrape sent right away can miss the newest request. An overshoot
    is returned at once: waiting cannot hide a double count.
    """
    deadline = time.monotonic() + 5
    while True:
        text = scrape(server)
        if sample(text, name, **labels) >= expected or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def get_experiment_fresh_connection(server: Server, count: int) -> None:
    """One connection per request, so the kernel spreads them over the workers."""
    for _ in range(count):
        response = requests.get(
            server.url + EXPERIMENT_GET,
            params={"experiment_id": "0"},
            headers={"Connection": "close"},
            timeout=10,
        )
        assert response.status_code == 200


def worker_pids(master: int) -> set[int]:
    return set(children_of(master).get(master, []))


def wait_for_workers(master: int, count: int, exclude: set[int]) -> set[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = worker_pids(master) - exclude
        if len(pids) >= count:
            return pids
        time.sleep(0.2)
    raise AssertionError("workers were not respawned within 60 s")


@pytest.fixture
def metrics_server(run_server, tmp_path) -> Server:
    server = run_server(MLFLOW_APP_METRICS_DIR=str(tmp_path / "metrics"))
    server.metrics_dir = tmp_path / "metrics"
    return server


def test_counts_are_exact_across_workers(metrics_server: Server) -> None:
    get_experiment_fresh_connection(metrics_server, 60)
    labels = {"method": "GET", "route": EXPERIMENT_GET, "status": "200"}
    text = scrape_settled(metrics_server, "mlflow_http_requests_total", 60, **labels)
    assert sample(text, "mlflow_http_requests_total", **labels) == 60
    assert (
        sample(
            text, "mlflow_http_request_duration_seconds_count", method="GET", route=EXPERIMENT_GET
        )
        == 60
    )
    assert (
        sample(
            text,
            "mlflow_upstream_requests_total",
            backend="sqlite",
            operation="get_experiment",
            status="ok",
        )
        >= 60
    )
    writers = {p.name for p in metrics_server.metrics_dir.glob("counter_*.db")}
    assert len(writers) >= 2, f"requests did not reach both workers: {writers}"


def test_a_killed_worker_neither_loses_nor_double_counts(metrics_server: Server) -> None:
    master = metrics_server.process.pid
    before = wait_for_workers(master, 2, set())
    get_experiment_fresh_connection(metrics_server, 40)
    # A request is counted as its worker closes the response, just after the client has read
    # it; a kill inside that moment loses it by design. Kill once all 40 are on record.
    scrape_settled(
        metrics_server,
        "mlflow_http_requests_total",
        40,
        method="GET",
        route=EXPERIMENT_GET,
        status="200",
    )
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for_workers(master, 2, {victim})
    get_experiment_fresh_connection(metrics_server, 25)

    text = scrape_settled(
        metrics_server,
        "mlflow_http_requests_total",
        65,
        method="GET",
        route=EXPERIMENT_GET,
        status="200",
    )
    assert (
        sample(text, "mlflow_http_requests_total", method="GET", route=EXPERIMENT_GET, status="200")
        == 65
    )
    assert sample(text, "mlflow_http_requests_in_progress") == 0


def test_series_stay_bounded_under_thousands_of_distinct_ids(metrics_server: Server) -> None:
    ids = [uuid.uuid4().hex for _ in range(1500)]
    with requests.Session() as session:
        for i, run_id in enumerate(ids):
            if i % 3 == 0:
                path = f"/api/2.0/mlflow/runs/get?run_id={run_id}"
            elif i % 3 == 1:
                path = f"/api/2.0/mlflow-artifacts/artifacts/{run_id}/model.pkl"
            else:
                path = f"/nothing-here/{run_id}"
            session.get(
                metrics_server.url + path,
                timeout=10,
                headers={
                    "X-Forwarded-Email": f"user{i}@example.com",
                    "Authorization": f"Bearer dapi{run_id}",
                },
            )
    # The last request is an unmatched one, so settling on it settles them all.
    text = scrape_settled(
        metrics_server,
        "mlflow_http_requests_total",
        500,
        method="GET",
        route="(unmatched)",
        status="404",
    )
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert (
        sample(
            text,
            "mlflow_http_requests_total",
            method="GET",
            route="/api/2.0/mlflow/runs/get",
            status="404",
        )
        == 500
    )
    assert (
        sample(text, "mlflow_http_requests_total", method="GET", route="(unmatched)", status="404")
        == 500
    )
    assert len(series) < 400
    assert not any(run_id in text for run_id in ids[:50])
    assert "@example.com" not in text
    assert "dapi" not in text


def test_readiness_and_info_are_exposed_and_the_api_alias_answers(metrics_server: Server):
    requests.get(metrics_server.url + "/readyz", timeout=10)
    text = scrape(metrics_server, "/api/metrics")
    assert sample(text, "mlflow_readiness", check="tracking_store") == 1
    assert (
        sample(text, "mlflow_app_info", backend="sqlite", registry="sqlite", artifacts="file") == 1
    )


def test_metrics_can_be_turned_off(run_server) -> None:
    server = run_server(MLFLOW_APP_METRICS="false")
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 404
    assert requests.get(server.url + "/api/metrics", timeout=10).json()["error_code"] == (
        "ENDPOINT_NOT_FOUND"
    )
