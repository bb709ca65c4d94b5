"""Migration throughput, side by side: `mlflow-app migrate` from one stock `mlflow server`
into another stock `mlflow server` (`--to`) and into this service's own store, in one run.

The source is filled once as the tests fill it (runs with 1000-step metric histories, a 20 MB
artifact tree, two registered models). Reported per destination: runs per second and MB/s of
the first migration, the seconds of a re-run that copies nothing, and the ratio of this service
to stock. This machine is shared and noisy: compare ratios, not absolute numbers.

Run: python3 benchmarks/migrate.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the benchmark reuses the tests' server and filling helpers

from tests.migration_source import fill, run_migration, stock_server  # noqa: E402
from tests.service_process import free_port, service_env  # noqa: E402


def timed_migration(source: str, environ: dict[str, str], report: Path, *extra: str) -> dict:
    started = time.perf_counter()
    done, tally = run_migration(source, environ, report, *extra)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"migration failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    runs = len(tally["copied"].get("runs", []))
    return {
        "seconds": round(seconds, 2),
        "runs": runs,
        "runs_per_second": round(runs / seconds, 2),
        "mb_per_second": round(tally["bytes_copied"] / 1e6 / seconds, 2),
    }


def one_round(source: str, scratch: Path) -> dict:
    results = {}
    stock_dir = scratch / "stock-destination"
    stock_dir.mkdir()
    with stock_server(stock_dir) as stock_url:
        environ = service_env(scratch, free_port())
        first = timed_migration(source, environ, scratch / "stock.json", "--to", stock_url)
        again = timed_migration(source, environ, scratch / "stock-again.json", "--to", stock_url)
        results["stock"] = {**first, "rerun_seconds": again["seconds"]}
    service_dir = scratch / "service"
    service_dir.mkdir()
    environ = service_env(service_dir, free_port())
    first = timed_migration(source, environ, scratch / "service.json")
    again = timed_migration(source, environ, scratch / "service-again.json")
    results["service"] = {**first, "rerun_seconds": again["seconds"]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="mlflow-app-migrate-bench-") as tmp:
        source_dir = Path(tmp) / "source"
        source_dir.mkdir()
        with stock_server(source_dir) as source:
            fill(source, source_dir)
            for index in range(args.rounds):
                scratch = Path(tmp) / f"round-{index}"
                scratch.mkdir()
                rounds.append(one_round(source, scratch))
                print(json.dumps(rounds[-1]), file=sys.stderr)
    summary = {}
    for variant in ("stock", "service"):
        rows = [r[variant] for r in rounds]
        summary[variant] = {
            key: round(sum(row[key] for row in rows) / len(rows), 2)
            for key in ("runs_per_second", "mb_per_second", "rerun_seconds")
        }
    summary["service / stock"] = {
        key: round(summary["service"][key] / summary["stock"][key], 2)
        for key in ("runs_per_second", "mb_per_second")
    }
    print(json.dumps({"rounds": rounds, "summary": summary}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # stdout is the report
    main()
