"""A stock `mlflow server` to migrate from, and what the migration tests put in it.

`fill` logs 3 experiments, 50 runs with params, tags, a dataset input and a 1000-step metric
history each, a 20 MB artifact tree, and 2 registered models: one from MLflow 3 logged models
with two versions and an alias, one from a run's artifacts with a stage and an alias.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from tests.service_process import free_port, stop, wait_ready

EXPERIMENTS = ("churn", "fraud", "forecast")
RUNS = 50
STEPS = 1000
TREE_MB = 20


@contextmanager
def stock_server(tmp: Path, backend_uri: str | None = None) -> Iterator[str]:
    """`mlflow server` as its users start it, with SQLite (or `backend_uri`) and proxied
    artifacts; yields its URL."""
    port = free_port()
    log = (tmp / "stock-server.log").open("wb")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "_MLFLOW"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            backend_uri or f"sqlite:///{tmp / 'stock.db'}",
            "--artifacts-destination",
            str(tmp / "stock-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environ,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, path="/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


def artifact_tree(root: Path) -> Path:
    """20 MB in nested files, random so nothing compresses it away."""
    files = {"weights/layer1.bin": 12, "weights/layer2.bin": 6, "data/sample.bin": 2}
    for name, megabytes in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(megabytes * 1024 * 1024))
    (root / "README.txt").write_text("a tree of artifacts\n")
    return root


def fill(url: str, scratch: Path) -> None:
    """Log everything the migration must carry into the server at `url`."""
    client = MlflowClient(url, url)
    experiment_ids = [client.create_experiment(name, tags={"team": name}) for name in EXPERIMENTS]
    for i in range(RUNS):
        _run(client, experiment_ids[i % len(experiment_ids)], i, scratch)
    first_run = client.search_runs([experiment_ids[0]], order_by=["params.index ASC"])[0]
    client.log_artifacts(first_run.info.run_id, str(artifact_tree(scratch / "tree")), "tree")
    _models(url, client, experiment_ids[1], scratch)


def _run(client: MlflowClient, experiment_id: str, index: int, scratch: Path) -> None:
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag

    run = client.create_run(experiment_id, tags={"kind": "train"}, run_name=f"run-{index}")
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param("index", f"{index:03d}"), Param("lr", "0.01")])
    start = run.info.start_time
    history = [Metric("loss", 1.0 / (s + 1) + index, start + s, s) for s in range(STEPS)]
    client.log_batch(run_id, metrics=history)
    import pandas as pd

    dataset = from_pandas(pd.DataFrame({"x": [index, index + 1]}), name=f"data-{index % 3}")
    client.log_inputs(
        run_id,
        [DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", "train")])],
    )
    note = scratch / f"note-{index}.txt"
    note.write_text(f"run {index}\n")
    client.log_artifact(run_id, str(note))
    client.set_terminated(run_id, "FAILED" if index == 7 else "FINISHED", start + 5000 + index)


def _models(url: str, client: MlflowClient, experiment_id: str, scratch: Path) -> None:
    """`iris` from logged models (versions 1 and 2, alias champion -> 2); `legacy` from a
    run's artifacts (stage Production, alias stable)."""
    from sklearn.linear_model import LogisticRegression

    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1], [0.1, 0.8]])
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    try:
        for labels in ([0, 1, 1, 0], [1, 0, 0, 1]):
            with mlflow.start_run(experiment_id=experiment_id):
                mlflow.sklearn.log_model(
                    LogisticRegression().fit(features, labels),
                    name="model",
                    input_example=features[:2],
                    registered_model_name="iris",
                )
        client.set_registered_model_alias("iris", "champion", "2")
        legacy = scratch / "legacy"
        legacy.mkdir()
        (legacy / "model.txt").write_text("weights: 1 2 3\n")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_artifacts(str(legacy), "legacy")
        client.create_registered_model("legacy", tags={"owner": "ops"}, description="old one")
        version = client.create_model_version(
            "legacy", f"runs:/{run.info.run_id}/legacy", run_id=run.info.run_id
        )
        client.transition_model_version_stage("legacy", version.version, "Production")
        client.set_registered_model_alias("legacy", "stable", version.version)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
