"""The Grafana dashboard's panels, plotted from real traffic (Grafana does not run here).

Starts the service, sends it a minute of mixed traffic (writes, reads, the UI, bad requests),
scrapes /metrics every 2 s, evaluates each panel's PromQL query of
`mlflow-app-dashboard.json` over the scrapes (rate over a 10 s window, sums by label,
histogram_quantile as Prometheus interpolates it), and draws them into docs/img/dashboard.png.

Run: python3 deploy/grafana/plot_panels.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # reuses the tests' way of running the service

DASHBOARD = Path(__file__).with_name("mlflow-app-dashboard.json")
PICTURE = REPO / "docs" / "img" / "dashboard.png"
WINDOW = 10.0  # seconds, Grafana's $__rate_interval at a 2 s scrape

Labels = tuple[tuple[str, str], ...]
Scrape = tuple[float, dict[tuple[str, Labels], float]]  # (time, {(sample name, labels): value})
Series = dict[str, list[tuple[float, float]]]  # legend -> [(time, value)]


# --- the queries, as Prometheus evaluates them --------------------------------------------------
def rates(scrapes: list[Scrape], name: str, keep: Callable[[dict], bool]) -> list[tuple]:
    """(time, {labels: per-second increase over WINDOW}) for each scrape with a window behind."""
    out = []
    for index, (now, samples) in enumerate(scrapes):
        earlier = next((s for s in reversed(scrapes[:index]) if now - s[0] >= WINDOW), None)
        if earlier is None:
            continue
        elapsed = now - earlier[0]
        values = {}
        for (sample, labels), value in samples.items():
            if sample == name and keep(dict(labels)):
                values[labels] = max(0.0, value - earlier[1].get((sample, labels), 0.0)) / elapsed
        out.append((now, values))
    return out


def summed(per_time: list[tuple], by: tuple[str, ...]) -> Series:
    series: Series = defaultdict(list)
    for now, values in per_time:
        groups: dict[str, float] = defaultdict(float)
        for labels, value in values.items():
            groups[", ".join(dict(labels).get(k, "") for k in by)] += value
        for legend, value in groups.items():
            series[legend].append((now, value))
    return series


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' interpolation within the bucket the rank falls in."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(buckets[bound] - below, 1e-12)
        lower, below = bound, buckets[bound]
    return lower


def quantiles(scrapes: list[Scrape], name: str, q: float, by: tuple[str, ...]) -> Series:
    series: Series = defaultdict(list)
    for now, values in rates(scrapes, name, lambda labels: True):
        groups: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        for labels, value in values.items():
            found = dict(labels)
            legend = ", ".join(found.get(k, "") for k in by)
            groups[legend][float(found["le"])] += value
        for legend, buckets in groups.items():
            value = histogram_quantile(q, buckets)
            if not math.isnan(value):
                series[legend].append((now, value))
    return series


def gauges(scrapes: list[Scrape], name: str, by: tuple[str, ...], combine=min) -> Series:
    series: Series = defaultdict(list)
    for now, samples in scrapes:
        groups: dict[str, list[float]] = defaultdict(list)
        for (sample, labels), value in samples.items():
            if sample == name:
                groups[", ".join(dict(labels).get(k, "") for k in by) or name].append(value)
        for legend, values in groups.items():
            series[legend].append((now, combine(values)))
    return series


def error_ratio(scrapes: list[Scrape]) -> Series:
    total = summed(rates(scrapes, "mlflow_http_requests_total", lambda _: True), ())
    series: Series = {}
    for kind in ("5", "4"):
        part = summed(
            rates(scrapes, "mlflow_http_requests_total", lambda x, k=kind: x["status"][0] == k),
            (),
        )
        by_time = dict(part.get("", []))
        series[f"{kind}xx"] = [(t, by_time.get(t, 0.0) / max(v, 1e-9)) for t, v in total[""]]
    return series


# One evaluation per panel of the dashboard, by title (a test checks none is missing).
PANELS: dict[str, Callable[[list[Scrape]], Series]] = {
    "Request rate by route": lambda s: summed(
        rates(s, "mlflow_http_requests_total", lambda _: True), ("route",)
    ),
    "Error ratio (5xx and 4xx of all requests)": error_ratio,
    "p50 latency by route": lambda s: quantiles(
        s, "mlflow_http_request_duration_seconds_bucket", 0.5, ("route",)
    ),
    "p99 latency by route": lambda s: quantiles(
        s, "mlflow_http_request_duration_seconds_bucket", 0.99, ("route",)
    ),
    "Store call p99 by operation": lambda s: quantiles(
        s, "mlflow_upstream_request_duration_seconds_bucket", 0.99, ("backend", "operation")
    ),
    "Store call failures": lambda s: summed(
        rates(s, "mlflow_upstream_requests_total", lambda x: x["status"] != "ok"),
        ("backend", "operation", "status"),
    ),
    "Readiness by check (1 = passing)": lambda s: gauges(s, "mlflow_readiness", ("check",)),
    "Requests in progress": lambda s: gauges(s, "mlflow_http_requests_in_progress", (), sum),
    "Versions and backends": lambda s: {},  # a table: drawn as text
}


# --- traffic and scrapes ------------------------------------------------------------------------
def scrape(url: str) -> dict[tuple[str, Labels], float]:
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def traffic(url: str, until: float) -> None:
    """One client: runs logged in batches, reads, the UI, and the bad requests users send."""
    import requests
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(url)
    experiment = client.create_experiment(f"dashboard-{random.randrange(10**9)}")
    session = requests.Session()
    while time.time() < until:
        run = client.create_run(experiment)
        now = int(time.time() * 1000)
        metrics = [Metric("loss", random.random(), now, step) for step in range(200)]
        client.log_batch(run.info.run_id, metrics=metrics)
        client.get_run(run.info.run_id)
        client.search_runs([experiment], max_results=50)
        session.get(f"{url}/", timeout=30)
        session.get(f"{url}/api/2.0/mlflow/runs/get", params={"run_id": "nope"}, timeout=30)
        session.post(f"{url}/api/2.0/mlflow/runs/log-batch", data="{", timeout=30)
        time.sleep(random.uniform(0.0, 0.3))


def record(url: str, seconds: float, clients: int) -> tuple[list[Scrape], dict]:
    started = time.time()
    scrapes: list[Scrape] = []
    threads = []
    for index in range(clients):
        # Clients join over the first third, so the rates climb rather than jump.
        delay = index * seconds / (3 * clients)
        thread = threading.Thread(
            target=lambda d=delay: (time.sleep(d), traffic(url, started + seconds)), daemon=True
        )
        thread.start()
        threads.append(thread)
    while time.time() < started + seconds + 4:
        scrapes.append((time.time() - started, scrape(url)))
        time.sleep(2)
    for thread in threads:
        thread.join(timeout=60)
    info = {
        dict(k[1]).get("version"): dict(k[1]) for k in scrapes[-1][1] if k[0] == "mlflow_app_info"
    }
    return scrapes, next(iter(info.values()), {})


# --- drawing ------------------------------------------------------------------------------------
def draw(scrapes: list[Scrape], info: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p.get("title")]
    figure, axes = plt.subplots(3, 3, figsize=(18, 11))
    for axis, panel in zip(axes.flat, panels, strict=False):
        axis.set_title(panel["title"], fontsize=10)
        if panel["type"] == "table":
            axis.axis("off")
            rows = [[k, v] for k, v in sorted(info.items())]
            if rows:
                axis.table(cellText=rows, colLabels=["label", "value"], loc="center")
            continue
        series = PANELS[panel["title"]](scrapes)
        top = sorted(series, key=lambda k: -max((v for _, v in series[k]), default=0))[:6]
        for legend in top:
            times, values = zip(*series[legend], strict=True)
            axis.plot(times, values, label=legend[-45:] or "all")
        axis.set_xlabel("seconds", fontsize=8)
        axis.tick_params(labelsize=8)
        if top:
            axis.legend(fontsize=6, loc="upper left")
    figure.suptitle("mlflow-app dashboard panels, one minute of test traffic", fontsize=12)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)


def main() -> None:
    from tests.service_process import free_port, service_env, start_gunicorn, stop, wait_ready

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlflow-app-dashboard-") as tmp:
        port = free_port()
        process = start_gunicorn(service_env(Path(tmp), port), Path(tmp) / "gunicorn.log")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process, "/readyz")
            scrapes, info = record(url, args.seconds, args.clients)
        finally:
            stop(process)
    draw(scrapes, info, PICTURE)
    print(f"wrote {PICTURE.relative_to(REPO)} from {len(scrapes)} scrapes")


if __name__ == "__main__":
    main()
