"""32 concurrent log-batch writers against the embedded default: no stall, nothing lost.

Stock `mlflow server` stalls on this load (its thread pool outgrows SQLAlchemy's connection
pool); here every acknowledged write must be readable afterwards.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.service_process import Server

WRITERS = 32
BATCHES_PER_WRITER = 15
METRICS_PER_BATCH = 10
STALL_LIMIT_SECONDS = 240  # a liveness bound: a stalled server fails, a slow one does not


def write_batches(server: Server, run_id: str, writer: int) -> list[int]:
    """Log batches for one writer; returns the steps the server acknowledged."""
    acknowledged = []
    with requests.Session() as session:
        for step in range(BATCHES_PER_WRITER):
            metrics = [
                {
                    "key": f"w{writer}_m{m}",
                    "value": writer + step / 100,
                    "timestamp": 1,
                    "step": step,
                }
                for m in range(METRICS_PER_BATCH)
            ]
            response = session.post(
                f"{server.url}/api/2.0/mlflow/runs/log-batch",
                json={"run_id": run_id, "metrics": metrics},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            acknowledged.append(step)
    return acknowledged


def test_concurrent_log_batch_writers_all_land(server: Server) -> None:
    run = requests.post(
        f"{server.url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, timeout=10
    ).json()["run"]
    run_id = run["info"]["run_id"]

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        futures = [pool.submit(write_batches, server, run_id, w) for w in range(WRITERS)]
        acknowledged = {w: f.result(timeout=STALL_LIMIT_SECONDS) for w, f in enumerate(futures)}

    assert all(len(steps) == BATCHES_PER_WRITER for steps in acknowledged.values())
    for writer, steps in acknowledged.items():
        for m in (0, METRICS_PER_BATCH - 1):
            history = requests.get(
                f"{server.url}/api/2.0/mlflow/metrics/get-history",
                params={"run_id": run_id, "metric_key": f"w{writer}_m{m}"},
                timeout=30,
            ).json()["metrics"]
            assert sorted(h["step"] for h in history) == steps
