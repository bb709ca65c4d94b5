"""A stock `mlflow server` to migrate from, and what the migration tests put in it.

`fill` logs 3 experiments, 50 runs with params, tags, a dataset input and a 1000-step metric
history each, a 20 MB artifact tree, and 2 registered models: one from MLflow 3 logged models
with two versions and an alias, one from a run's artifacts with a stage and an alias.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run

from mlflow_app.migrate_copy import COMPLETE, MIGRATED_FROM
from tests.service_process import REPO, free_port, stop, wait_ready

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


# --- running the migration -----------------------------------------------------------------
def migrate_command(source: str, report: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow_app.cli",
        "migrate",
        "--from",
        source,
        "--report",
        str(report),
        *extra,
    ]


def run_migration(
    source: str, environ: dict[str, str], report: Path, *extra: str
) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run(
        migrate_command(source, report, *extra),
        env=environ,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done, json.loads(report.read_text()) if report.exists() else {}


def kill_midway(source: str, environ: dict[str, str], report: Path, runs: int) -> int:
    """Start a migration and SIGKILL it once its progress bar shows `runs` runs copied; the
    runs it had copied by then."""
    process = subprocess.Popen(
        migrate_command(source, report),
        env=environ,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seen = 0
    try:
        buffer = b""
        while process.poll() is None and seen < runs:
            buffer += process.stderr.read1(4096) if process.stderr else b""
            counts = re.findall(rb"runs:.*?\| *(\d+)/\d+", buffer[-4096:])
            seen = int(counts[-1]) if counts else seen
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert seen >= runs, "the migration ended before it could be interrupted"
    return seen


# --- comparing source and destination -------------------------------------------------------
def migrated(destination: MlflowClient, experiment_id: str) -> dict[str, Run]:
    runs = destination.search_runs([experiment_id], max_results=1000)
    return {r.data.tags[MIGRATED_FROM]: r for r in runs if MIGRATED_FROM in r.data.tags}


def own_tags(run: Run) -> dict[str, str]:
    return {k: v for k, v in run.data.tags.items() if k not in (MIGRATED_FROM, COMPLETE)}


def tree_digest(client: MlflowClient, run_id: str, scratch: Path) -> dict[str, str]:
    """sha256 of every artifact file of a run, by path."""
    scratch.mkdir(parents=True, exist_ok=True)
    local = Path(client.download_artifacts(run_id, "", str(scratch)))
    return {
        str(p.relative_to(local)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(local.rglob("*"))
        if p.is_file()
    }


def assert_runs_match(
    source: MlflowClient, destination: MlflowClient, rename: Callable[[str], str], scratch: Path
) -> int:
    """Every source run has a destination run equal field by field; the number compared."""
    compared = 0
    for experiment in source.search_experiments():
        target = destination.get_experiment_by_name(rename(experiment.name))
        assert target is not None, experiment.name
        assert {k: v for k, v in target.tags.items() if k == "team"} == {
            k: v for k, v in experiment.tags.items() if k == "team"
        }
        copies = migrated(destination, target.experiment_id)
        for run in source.search_runs([experiment.experiment_id], max_results=1000):
            copy = copies[run.info.run_id]
            assert copy.data.params == run.data.params
            assert own_tags(copy) == own_tags(run)
            assert (copy.info.status, copy.info.start_time, copy.info.end_time) == (
                run.info.status,
                run.info.start_time,
                run.info.end_time,
            )
            assert copy.info.run_name == run.info.run_name
            for key in run.data.metrics:
                points = [
                    (m.step, m.timestamp, m.value)
                    for m in source.get_metric_history(run.info.run_id, key)
                ]
                copied = [
                    (m.step, m.timestamp, m.value)
                    for m in destination.get_metric_history(copy.info.run_id, key)
                ]
                assert sorted(copied) == sorted(points)
            datasets = [(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs]
            assert [(d.dataset.name, d.dataset.digest) for d in copy.inputs.dataset_inputs] == (
                datasets
            )
            here = scratch / run.info.run_id
            assert tree_digest(destination, copy.info.run_id, here / "copy") == tree_digest(
                source, run.info.run_id, here / "source"
            )
            compared += 1
    return compared


def assert_models_match(
    source: MlflowClient,
    destination: MlflowClient,
    rename: Callable[[str], str],
    only: tuple[str, ...] = (),
) -> None:
    """Versions, their tags and every alias (stages as aliases) point where the source's do."""
    for model in source.search_registered_models():
        if only and model.name not in only:
            continue
        copy = destination.get_registered_model(rename(model.name))
        versions = [
            destination.get_model_version(copy.name, v.version)  # UC's search has no tags
            for v in destination.search_model_versions(f"name='{copy.name}'")
        ]
        by_source = {v.tags[MIGRATED_FROM]: v for v in versions}
        source_versions = source.search_model_versions(f"name='{model.name}'")
        assert len(by_source) == len(source_versions)
        aliases = dict(model.aliases)
        for version in source_versions:
            if version.current_stage == "Production":
                aliases.setdefault("production", version.version)
            twin = by_source[f"{model.name}/{version.version}"]
            assert {k: v for k, v in twin.tags.items() if k != MIGRATED_FROM} == version.tags
        for alias, version in aliases.items():
            resolved = destination.get_model_version_by_alias(copy.name, alias)
            assert resolved.tags[MIGRATED_FROM] == f"{model.name}/{version}", alias
