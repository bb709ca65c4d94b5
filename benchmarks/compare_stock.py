"""Side-by-side benchmark: stock `mlflow server` against this service, in one run.

Servers are started in turn (A B A B by default) on 127.0.0.1 with fresh SQLite data, and
each is measured on: cold start to first 200, memory of its whole process tree (RSS and PSS),
a read mix and a log-batch write mix at 8 and 32 concurrent clients, and the UI index, each
with throughput, p50/p99 and the server's CPU per request (from /proc). `bare` is gunicorn
serving `mlflow.server:app` with nothing of ours: the ceiling for MLflow's Flask app
(`bare_logged` adds gunicorn's access log, which a production deployment keeps). Results are
printed per round and as ratios against stock. Every load loop is bounded in requests and time.

    python benchmarks/compare_stock.py [--rounds 2] [--requests 400] [--postgres] [--json out.json]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the benchmark reuses the tests' process and server helpers

from tests.service_process import children_of, free_port  # noqa: E402

MIX_TIME_LIMIT = 60.0
START_TIME_LIMIT = 120.0


@dataclass
class Variant:
    name: str
    command: Callable[[int, Path], list[str]]
    env: Callable[[int, Path], dict[str, str]] = lambda port, data: {}


def sqlite_backend(data: Path) -> str:
    return f"sqlite:///{data}/mlflow.db"


# Each server start gets a fresh database from this; --postgres swaps in a PostgreSQL one.
backend_uri: Callable[[Path], str] = sqlite_backend


def postgres_backend_factory() -> Callable[[Path], str]:
    """A throwaway PostgreSQL cluster (the tests' helper); a new database per server start."""
    from tests.integration.postgres import create_postgres

    cluster = create_postgres(free_port())
    atexit.register(cluster.stop)

    def fresh_database(data: Path) -> str:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        cluster.psql(f"CREATE DATABASE {name} OWNER mlflow")
        return cluster.uri.rsplit("/", 1)[0] + "/" + name

    return fresh_database


def stock_command(port: int, data: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        "--backend-store-uri",
        backend_uri(data),
        "--artifacts-destination",
        str(data / "artifacts"),
    ]


def service_command(port: int, data: Path) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def service_env(port: int, data: Path) -> dict[str, str]:
    return {
        "PORT": str(port),
        "MLFLOW_APP_HOST": "127.0.0.1",
        "MLFLOW_APP_DATA_DIR": str(data),
        "MLFLOW_BACKEND_STORE_URI": backend_uri(data),
        "MLFLOW_WORKERS": "2",
    }


def bare_command(port: int, data: Path) -> list[str]:
    """gunicorn serving MLflow's Flask app with nothing of ours: the ceiling for that app."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        # gunicorn reads ./gunicorn.conf.py by default, and the benchmark runs in this repository.
        "--config",
        "/dev/null",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "mlflow.server:app",
    ]


def bare_logged_command(port: int, data: Path) -> list[str]:
    """The bare app with gunicorn's access log on stdout, as a production deployment runs it:
    the ceiling for a server that logs each request, as this service does."""
    return [*bare_command(port, data), "--access-logfile", "-"]


def bare_env(port: int, data: Path) -> dict[str, str]:
    uri = backend_uri(data)
    # The bare app creates its schema in each worker at once; create it first, as `mlflow
    # server` does before it starts its workers.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; "
            "SqlAlchemyStore(sys.argv[1], sys.argv[2])",
            uri,
            str(data / "artifacts"),
        ],
        check=True,
        capture_output=True,
    )
    return {
        "_MLFLOW_SERVER_FILE_STORE": uri,
        "_MLFLOW_SERVER_REGISTRY_STORE": uri,
        "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
        "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION": str(data / "artifacts"),
    }


def service_env_without_metrics(port: int, data: Path) -> dict[str, str]:
    return {**service_env(port, data), "MLFLOW_APP_METRICS": "false"}


VARIANTS = {
    "stock": Variant("stock", stock_command),
    "bare": Variant("bare", bare_command, bare_env),
    "bare_logged": Variant("bare_logged", bare_logged_command, bare_env),
    "service_no_metrics": Variant(
        "service_no_metrics", service_command, service_env_without_metrics
    ),
    "service": Variant("service", service_command, service_env),
}


@dataclass
class Measurement:
    variant: str
    cold_start_s: float
    rss_mb: float
    pss_mb: float
    processes: int
    mixes: dict[str, dict[str, float]] = field(default_factory=dict)


def request(
    port: int,
    method: str,
    path: str,
    body: dict | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> int:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    if own:
        conn.close()
    return response.status


def wait_first_200(port: int, process: subprocess.Popen) -> float:
    started = time.monotonic()
    while time.monotonic() - started < START_TIME_LIMIT:
        if process.poll() is not None:
            raise RuntimeError("server exited during startup")
        try:
            if request(port, "GET", "/api/2.0/mlflow/experiments/get?experiment_id=0") == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("no 200 within the start limit")


def process_tree(root: int) -> list[int]:
    children = children_of(root)
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process tree so far (/proc, not the noisy wall clock)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """Summed RSS and PSS (shared pages split between sharers) of the processes."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


def run_mix(
    port: int,
    concurrency: int,
    total: int,
    one: Callable[[http.client.HTTPConnection, int], int],
    seconds: float = MIX_TIME_LIMIT,
) -> dict[str, float]:
    """`total` requests over `concurrency` keep-alive connections, for at most `seconds`;
    latency and throughput."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(total))
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                ok = one(conn, i) == 200
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - t0)
                errors += not ok
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan"),
    }


@contextlib.contextmanager
def running(variant: Variant) -> Iterator[tuple[int, subprocess.Popen]]:
    """A fresh server of this variant on a free port, answering; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant.name}-") as tmp:
        data = Path(tmp)
        port = free_port()
        env = {**os.environ, **variant.env(port, data)}
        process = subprocess.Popen(
            variant.command(port, data),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            yield port, process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def mixes(port: int, run_id: str) -> dict[str, tuple[int, Callable]]:
    """Name -> (concurrency, one request)."""
    return {
        "read_8": (8, lambda c, i: read_one(c, i, run_id)),
        "read_32": (32, lambda c, i: read_one(c, i, run_id)),
        "log_batch_8": (8, lambda c, i: log_batch_one(c, i, run_id)),
        "log_batch_32": (32, lambda c, i: log_batch_one(c, i, run_id)),
        "ui_index": (8, lambda c, i: request(port, "GET", "/", conn=c)),
    }


def measure(variant: Variant, total: int) -> Measurement:
    with running(variant) as (port, process):
        cold = wait_first_200(port, process)
        time.sleep(2)  # let every worker and helper process finish booting
        tree = process_tree(process.pid)
        rss, pss = memory_mb(tree)
        result = Measurement(variant.name, cold, rss, pss, len(tree))
        run_id = seed(port)
        for name, (concurrency, one) in mixes(port, run_id).items():
            before = cpu_seconds(process.pid)
            mix = run_mix(port, concurrency, total, one)
            used = cpu_seconds(process.pid) - before
            mix["cpu_ms_per_request"] = 1000 * used / max(1, mix["requests"])
            result.mixes[name] = mix
        return result


def seed(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST",
        "/api/2.0/mlflow/runs/create",
        body=json.dumps({"experiment_id": "0"}),
        headers={"Content-Type": "application/json"},
    )
    run_id = json.loads(conn.getresponse().read())["run"]["info"]["run_id"]
    conn.close()
    return run_id


def read_one(conn: http.client.HTTPConnection, i: int, run_id: str) -> int:
    if i % 2:
        return request(0, "GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}", conn=conn)
    return request(
        0,
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": ["0"], "max_results": 10},
        conn=conn,
    )


# Every log-batch request of a run logs new points: a point repeated from an earlier mix (same
# key, step, timestamp and value) sends MLflow's store down its slower duplicate-recovery path.
_log_batch_sequence = itertools.count()


def log_batch_one(conn: http.client.HTTPConnection, i: int, run_id: str) -> int:
    n = next(_log_batch_sequence)
    metrics = [{"key": f"m{k}", "value": float(n), "timestamp": n, "step": n} for k in range(10)]
    return request(
        0,
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        {"run_id": run_id, "metrics": metrics},
        conn=conn,
    )


def report(results: list[Measurement]) -> dict:
    by_variant: dict[str, list[Measurement]] = {}
    for m in results:
        by_variant.setdefault(m.variant, []).append(m)

    def mean(values: list[float]) -> float:
        return statistics.fmean(values)

    summary = {}
    for name, ms in by_variant.items():
        summary[name] = {
            "cold_start_s": mean([m.cold_start_s for m in ms]),
            "rss_mb": mean([m.rss_mb for m in ms]),
            "pss_mb": mean([m.pss_mb for m in ms]),
            "processes": mean([m.processes for m in ms]),
            **{
                f"{mix}.{k}": mean([m.mixes[mix][k] for m in ms])
                for mix in ms[0].mixes
                for k in ms[0].mixes[mix]
            },
        }
    comparisons = (
        ("service", "stock"),
        ("service", "bare"),
        ("service", "bare_logged"),
        ("bare", "stock"),
        ("service_no_metrics", "stock"),
        ("service", "service_no_metrics"),
    )
    for name, baseline in comparisons:
        if name in summary and baseline in summary:
            summary[name][f"ratios_vs_{baseline}"] = ratios(summary[name], summary[baseline])
    return summary


def ratios(row: dict, baseline: dict) -> dict[str, float]:
    return {
        k: round(v / baseline[k], 3)
        for k, v in row.items()
        if isinstance(v, float) and baseline.get(k)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=400, help="requests per mix")
    parser.add_argument("--variants", default="stock,bare,service")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="use a throwaway PostgreSQL server instead of SQLite (needs root "
        "and Debian postgresql)",
    )
    args = parser.parse_args()
    if args.postgres:
        global backend_uri
        backend_uri = postgres_backend_factory()

    results = []
    for round_number in range(args.rounds):
        for name in args.variants.split(","):
            m = measure(VARIANTS[name], args.requests)
            results.append(m)
            mixes = "  ".join(
                f"{k}: {v['throughput_rps']:.0f} rps p50 {v['p50_ms']:.1f} ms "
                f"p99 {v['p99_ms']:.1f} ms cpu {v['cpu_ms_per_request']:.2f} ms/req "
                f"err {v['errors']:.0f}"
                for k, v in m.mixes.items()
            )
            print(
                f"round {round_number + 1} {name:18} start {m.cold_start_s:.2f} s  "
                f"RSS {m.rss_mb:.0f} MB PSS {m.pss_mb:.0f} MB ({m.processes} procs)  {mixes}",
                flush=True,
            )
    summary = report(results)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
