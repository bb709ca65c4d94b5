"""The embedded SQLite store under concurrent writers: WAL, a long busy timeout, and nothing
acknowledged lost when a worker dies mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import requests

from tests.service_process import Server, children_of

API = "/api/2.0/mlflow"


def create_run(server: Server) -> str:
    response = requests.post(
        f"{server.url}{API}/runs/create", json={"experiment_id": "0"}, timeout=30
    )
    return response.json()["run"]["info"]["run_id"]


def log_metric(server: Server, run_id: str, step: int, timeout: float = 120) -> int:
    metric = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 0, "step": step}
    return requests.post(
        f"{server.url}{API}/runs/log-metric", json=metric, timeout=timeout
    ).status_code


def steps(server: Server, run_id: str) -> set[int]:
    history = requests.get(
        f"{server.url}{API}/metrics/get-history",
        params={"run_id": run_id, "metric_key": "m", "max_results": 100_000},
        timeout=30,
    ).json()
    return {m["step"] for m in history.get("metrics", [])}


def test_readers_go_on_and_writers_wait_while_the_write_lock_is_held(server: Server) -> None:
    database = server.data_dir / "mlflow.db"
    run_id = create_run(server)
    holder = sqlite3.connect(database, isolation_level=None)
    assert holder.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the lock, longer than sqlite3's 5 s
    outcome: list[int] = []
    writer = threading.Thread(target=lambda: outcome.append(log_metric(server, run_id, 7)))
    writer.start()
    try:
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            read = requests.get(
                f"{server.url}{API}/runs/get", params={"run_id": run_id}, timeout=30
            )
            assert read.status_code == 200, read.text
            time.sleep(0.5)
        assert outcome == []  # still waiting for the lock, not failed
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    writer.join(60)
    assert outcome == [200]
    assert 7 in steps(server, run_id)


def gate_holder(lock_file: Path, workers: list[int]) -> int | None:
    """The worker holding the write gate's flock now, from /proc/locks."""
    inode = str(lock_file.stat().st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        # "1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF"
        _number, kind, _mode, access, pid, device, *_ = line.split()
        if kind == "FLOCK" and access == "WRITE" and device.rsplit(":", 1)[1] == inode:
            return int(pid) if int(pid) in workers else None
    return None


def test_a_worker_killed_holding_the_write_gate_loses_nothing_acknowledged(
    server: Server,
) -> None:
    run_id = create_run(server)
    acknowledged: list[int] = []
    after_kill: list[int] = []
    timed_out: list[int] = []
    killed = threading.Event()
    stop = threading.Event()

    def write(writer: int) -> None:
        step = writer * 1_000_000
        while not stop.is_set():
            try:
                if log_metric(server, run_id, step, timeout=30) == 200:
                    acknowledged.append(step)
                    if killed.is_set():
                        after_kill.append(step)
            except requests.Timeout:
                timed_out.append(step)  # a write left waiting behind a dead holder
            except requests.ConnectionError:
                pass  # the killed worker's request: never acknowledged
            step += 1

    writers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in writers:
        thread.start()
    lock_file = server.data_dir / "mlflow.db.write-lock"
    workers = children_of(server.process.pid)[server.process.pid]
    deadline = time.monotonic() + 30
    holder = None
    while holder is None and time.monotonic() < deadline:
        holder = gate_holder(lock_file, workers) if lock_file.exists() else None
    assert holder is not None, "no worker was seen holding the write gate"
    os.kill(holder, signal.SIGKILL)  # mid-write: it holds SQLite's write lock too
    killed.set()
    time.sleep(3)
    stop.set()
    for thread in writers:
        thread.join(60)
    assert len(after_kill) > 5 and timed_out == []  # the dead holder's gate was freed at once
    assert set(acknowledged) <= steps(server, run_id)
