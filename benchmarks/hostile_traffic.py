"""Hostile traffic, side by side: stock `mlflow server` against this service, in one run.

For each server (fresh SQLite, 2 workers, on 127.0.0.1): throughput and p99 of a
/healthz + runs/get mix, first unloaded, then with 200 clients sending headers slowly, 200
sending a body slowly and 500 idle connections open; then SIGTERM to exit, idle and under 16
writers. `--dead-db` also starts each against a database that accepts connections and never
answers, and times the first API answer. Every loop is bounded in requests and time.

    python benchmarks/hostile_traffic.py [--requests 400] [--dead-db] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

from compare_stock import (
    REPO,
    VARIANTS,
    Variant,
    free_port,
    run_mix,
    seed,
    wait_first_200,
)

from tests.integration.silent_database import silent_database

HOSTILE = {"slow_header": 200, "slow_body": 200, "idle": 500}
TRICKLE_SECONDS = 2.0  # a slow client sends one byte this often


class HostileClients:
    """Connections that hold a server's attention without finishing a request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.trickler = threading.Thread(target=self.trickle, daemon=True)

    def open(self) -> None:
        head = b"GET /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
        body = (
            b"POST /api/2.0/mlflow/experiments/create HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"
        )
        for kind, first in (("slow_header", head), ("slow_body", body), ("idle", b"")):
            for _ in range(HOSTILE[kind]):
                try:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                    if first:
                        sock.sendall(first)
                    self.sockets.append(sock)
                except OSError:
                    pass
        self.trickler.start()

    def trickle(self) -> None:
        while not self.stop.wait(TRICKLE_SECONDS):
            for sock in self.sockets[: HOSTILE["slow_header"] + HOSTILE["slow_body"]]:
                with contextlib.suppress(OSError):
                    sock.send(b"a")

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:
            sock.close()


def mixed_one(run_id: str, health_path: str):
    def one(conn: http.client.HTTPConnection, i: int) -> int:
        path = health_path if i % 2 else f"/api/2.0/mlflow/runs/get?run_id={run_id}"
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status

    return one


def start(variant: Variant, data: Path, port: int, extra: dict[str, str] | None = None):
    env = {**os.environ, **variant.env(port, data), **(extra or {})}
    log = (data / "server.log").open("wb")
    return subprocess.Popen(
        variant.command(port, data), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def seconds_to_exit(process: subprocess.Popen, limit: float = 60.0) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return float("inf")
    return time.monotonic() - started


def sigterm_under_writers(variant: Variant, total: int) -> float:
    with tempfile.TemporaryDirectory(prefix=f"hostile-{variant.name}-") as tmp:
        port = free_port()
        process = start(variant, Path(tmp), port)
        wait_first_200(port, process)
        run_id = seed(port)
        stop = threading.Event()

        def write(writer: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            step = writer * 1_000_000
            while not stop.is_set() and step < writer * 1_000_000 + total:
                metric = {"key": "m", "value": 1.0, "timestamp": 0, "step": step}
                try:
                    conn.request(
                        "POST",
                        "/api/2.0/mlflow/runs/log-batch",
                        body=json.dumps({"run_id": run_id, "metrics": [metric]}),
                        headers={"Content-Type": "application/json"},
                    )
                    conn.getresponse().read()
                except OSError:
                    return
                step += 1

        writers = [threading.Thread(target=write, args=(i,)) for i in range(16)]
        for thread in writers:
            thread.start()
        time.sleep(2)
        elapsed = seconds_to_exit(process)
        stop.set()
        for thread in writers:
            thread.join(30)
        return elapsed


def measure(variant: Variant, total: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"hostile-{variant.name}-") as tmp:
        port = free_port()
        process = start(variant, Path(tmp), port)
        try:
            wait_first_200(port, process)
            run_id = seed(port)
            # Liveness: MLflow's own /health on stock, ours (answered before MLflow) here.
            one = mixed_one(run_id, "/health" if variant.name == "stock" else "/healthz")
            unloaded = run_mix(port, 8, total, one)
            hostile = HostileClients(port)
            hostile.open()
            time.sleep(TRICKLE_SECONDS)
            loaded = run_mix(port, 8, total, one)
            hostile.close()
            keepalive = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            keepalive.request("GET", "/health")
            keepalive.getresponse().read()
            idle_exit = seconds_to_exit(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return {
        "variant": variant.name,
        "unloaded": unloaded,
        "hostile_open": len(hostile.sockets),
        "loaded": loaded,
        "sigterm_idle_s": idle_exit,
        "sigterm_16_writers_s": sigterm_under_writers(variant, total),
    }


def dead_database_answer(variant: Variant, limit: float = 60.0) -> dict:
    """Seconds from start to the first answer of an API call against a silent database."""
    with silent_database() as port:
        return _first_answer(variant, f"postgresql://mlflow:pw@127.0.0.1:{port}/mlflow", limit)


def _first_answer(variant: Variant, uri: str, limit: float) -> dict:
    extra = {"MLFLOW_BACKEND_STORE_URI": uri, "MLFLOW_APP_START_DEGRADED": "true"}
    command = variant.command
    variant = Variant(
        variant.name,
        lambda port, data: [
            uri if arg == f"sqlite:///{data}/mlflow.db" else arg for arg in command(port, data)
        ],
        variant.env,
    )
    with tempfile.TemporaryDirectory(prefix=f"deaddb-{variant.name}-") as tmp:
        port = free_port()
        started = time.monotonic()
        process = start(variant, Path(tmp), port, extra)
        answer: dict = {"variant": variant.name, "status": None, "seconds": None}
        try:
            while time.monotonic() - started < limit and process.poll() is None:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=limit)
                    sent = time.monotonic()
                    conn.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1")
                    response = conn.getresponse()
                    response.read()
                    answer = {
                        "variant": variant.name,
                        "status": response.status,
                        "seconds": round(time.monotonic() - sent, 2),
                        "retry_after": response.getheader("Retry-After"),
                    }
                    break
                except OSError:
                    time.sleep(0.5)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if answer["status"] is None:
            answer["note"] = f"no answer within {limit:g} s (exited: {process.returncode})"
        return answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--variants", default="stock,service")
    parser.add_argument("--dead-db", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for name in args.variants.split(","):
        result = measure(VARIANTS[name], args.requests)
        if args.dead_db:
            result["dead_database"] = dead_database_answer(VARIANTS[name])
        results.append(result)
        print(json.dumps(result, indent=2), flush=True)
    for result in results:
        unloaded, loaded = result["unloaded"], result["loaded"]
        print(
            f"{result['variant']:>8}: unloaded {unloaded['throughput_rps']:.0f} rps "
            f"p99 {unloaded['p99_ms']:.0f} ms | with {result['hostile_open']} hostile "
            f"connections {loaded['throughput_rps']:.0f} rps p99 {loaded['p99_ms']:.0f} ms, "
            f"{loaded['errors']} errors, {loaded['requests']} answered "
            f"(throughput x{loaded['throughput_rps'] / unloaded['throughput_rps']:.2f}) | "
            f"SIGTERM idle {result['sigterm_idle_s']:.2f} s, under 16 writers "
            f"{result['sigterm_16_writers_s']:.2f} s"
            + (f" | dead database: {result['dead_database']}" if "dead_database" in result else "")
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
