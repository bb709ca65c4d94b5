"""CPU cost of the metrics middleware per request, measured in-process (no network noise).

Times a trivial WSGI app bare and wrapped in `Metrics` (prometheus_client multiprocess mode,
as under gunicorn), and a store call bare and instrumented, then prints microseconds per call.
Compare with the CPU a real request costs (2 cores / throughput from compare_stock.py).

    python benchmarks/metrics_overhead.py [--calls 50000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-overhead-")

from mlflow_app.metrics import Metrics, instrument_store
from mlflow_app.wsgi_types import ROUTE_KEY


def trivial_app(environ, start_response):
    environ[ROUTE_KEY] = "/api/2.0/mlflow/runs/get"
    start_response("200 OK", [])
    return [b"{}"]


class Store:
    def get_run(self, run_id: str) -> str:
        return run_id


def per_call_us(call, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50000)
    args = parser.parse_args()
    environ = {"PATH_INFO": "/api/2.0/mlflow/runs/get", "REQUEST_METHOD": "GET"}
    wrapped = Metrics(trivial_app, ["/metrics"])

    def request(app):
        body = app(dict(environ), lambda *a: None)
        list(body)
        getattr(body, "close", lambda: None)()

    bare_request = per_call_us(lambda: request(trivial_app), args.calls)
    metered_request = per_call_us(lambda: request(wrapped), args.calls)
    plain, timed = Store(), instrument_store(Store(), "sqlite")
    bare_store = per_call_us(lambda: plain.get_run("r"), args.calls)
    timed_store = per_call_us(lambda: timed.get_run("r"), args.calls)
    print(
        f"request: bare {bare_request:.1f} us, with metrics {metered_request:.1f} us, "
        f"cost {metered_request - bare_request:.1f} us per request"
    )
    print(
        f"store call: bare {bare_store:.2f} us, timed {timed_store:.1f} us, "
        f"cost {timed_store - bare_store:.1f} us per call"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
