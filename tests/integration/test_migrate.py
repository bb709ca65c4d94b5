"""`mlflow-app migrate` from a stock `mlflow server` (SQLite) into the embedded default:
interrupted halfway by SIGKILL, resumed, re-run, then compared field by field through the
service, and the model loaded by alias."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient

from tests.migration_source import (
    RUNS,
    assert_models_match,
    assert_runs_match,
    fill,
    kill_midway,
    run_migration,
    stock_server,
)
from tests.service_process import free_port, service_env

# The runs `fill` makes: 50, plus 2 that logged `iris` and 1 that holds `legacy`.
ALL_RUNS = RUNS + 3


def test_a_stock_server_moves_in_and_an_interrupted_migration_resumes(
    run_server, tmp_path: Path
) -> None:
    (tmp_path / "stock").mkdir()
    with stock_server(tmp_path / "stock") as source_url:
        fill(source_url, tmp_path / "stock")
        environ = service_env(tmp_path, free_port())  # the service's own settings: data dir

        copied_first = kill_midway(source_url, environ, tmp_path / "killed.json", runs=20)
        resumed, report = run_migration(source_url, environ, tmp_path / "resumed.json")
        again, report_again = run_migration(source_url, environ, tmp_path / "again.json")
        dry, _ = run_migration(source_url, environ, tmp_path / "dry.json", "--dry-run")

        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        copied, skipped = report["copied"]["runs"], report["skipped"]["runs"]
        assert len(copied) + len(skipped) == ALL_RUNS
        # What the killed run finished is kept; at most the run it was in is redone.
        assert len(skipped) >= copied_first - 1 and len(copied) < ALL_RUNS
        assert again.returncode == 0 and report_again["copied"] == {}
        assert len(report_again["skipped"]["runs"]) == ALL_RUNS
        assert dry.returncode == 0 and "would copy" in dry.stdout
        assert "experiment        churn" in resumed.stdout  # the mapping table

        service = run_server()
        source = MlflowClient(source_url, source_url)
        destination = MlflowClient(service.url, service.url)
        compared = assert_runs_match(source, destination, lambda name: name, tmp_path / "cmp")
        assert compared == ALL_RUNS
        assert_models_match(source, destination, lambda name: name)
        features = np.array([[0.0, 1.0], [1.0, 0.0]])
        mlflow.set_registry_uri(source_url)
        mlflow.set_tracking_uri(source_url)
        try:
            expected = mlflow.pyfunc.load_model("models:/iris@champion").predict(features)
            mlflow.set_registry_uri(service.url)
            mlflow.set_tracking_uri(service.url)
            loaded = mlflow.pyfunc.load_model("models:/iris@champion").predict(features)
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
        assert list(loaded) == list(expected)


def test_an_unreachable_source_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    environ = service_env(tmp_path, free_port())
    done, report = run_migration(
        f"http://127.0.0.1:{free_port()}", environ, tmp_path / "report.json"
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("mlflow-app: migrate: cannot read the source 'http://127.0.0.1:")
    assert lines[-1].endswith("check --from and its credentials")
    assert report == {}
