"""`mlflow-app migrate` from a stock `mlflow server` on PostgreSQL into Databricks mode on the
stand-in workspace: experiments into the app's folder, artifacts into the UC volume, models
into Unity Catalog under --model-prefix, and what UC refuses reported by id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.contract.standin_handle import VOLUME, StandIn
from tests.integration.postgres import Postgres, create_postgres, postgres_bin
from tests.migration_source import (
    RUNS,
    assert_models_match,
    assert_runs_match,
    fill,
    run_migration,
    stock_server,
)
from tests.service_process import free_port, service_env

pytestmark = pytest.mark.skipif(
    postgres_bin() is None, reason="needs Debian's postgresql package (apt-get install postgresql)"
)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    server = create_postgres(free_port())
    yield server
    server.stop()


def test_a_postgresql_stock_server_moves_into_the_workspace_and_unity_catalog(
    run_server, standin: StandIn, postgres: Postgres, tmp_path: Path
) -> None:
    settings = standin.service_settings(MLFLOW_DEFAULT_ARTIFACT_ROOT=f"{VOLUME}/mlflow")
    # The stock server uses the psycopg driver we install (SQLAlchemy's default is psycopg2).
    backend = postgres.uri.replace("postgresql://", "postgresql+psycopg://")
    (tmp_path / "stock").mkdir()
    with stock_server(tmp_path / "stock", backend) as source_url:
        fill(source_url, tmp_path / "stock")
        environ = service_env(tmp_path, free_port(), **settings)
        environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"  # a failure shows at once
        first, report = run_migration(
            source_url, environ, tmp_path / "first.json", "--model-prefix", "main.mlflow"
        )
        _, report_again = run_migration(
            source_url, environ, tmp_path / "again.json", "--model-prefix", "main.mlflow"
        )

        # UC takes only models with a signature: `legacy` (plain files) is refused, by id.
        assert first.returncode == 1, first.stdout + first.stderr[-3000:]
        assert set(report["failed"]) == {"model versions"}, first.stdout + first.stderr[-3000:]
        assert [f.split(":")[0] for f in report["failed"]["model versions"]] == ["legacy/1"]
        assert "failed model version legacy/1: " in first.stdout
        assert "registered model  iris" in first.stdout and "main.mlflow.iris" in first.stdout
        assert len(report["copied"]["runs"]) == RUNS + 3
        assert report_again["copied"] == {}

        service = run_server(**settings)
        source = MlflowClient(source_url, source_url)
        destination = MlflowClient(service.url, service.url)
        assert assert_runs_match(source, destination, lambda n: n, tmp_path / "cmp") == RUNS + 3
        assert_models_match(source, destination, lambda n: f"main.mlflow.{n}", only=("iris",))

        churn = destination.get_experiment_by_name("churn")
        stored = standin.api(
            "GET", "/api/2.0/mlflow/experiments/get", params={"experiment_id": churn.experiment_id}
        ).json()["experiment"]
        assert stored["name"] == "/Shared/mlflow-test/churn"
        assert stored["artifact_location"].startswith(f"dbfs:{VOLUME}/mlflow/")

        champion = destination.get_model_version_by_alias("main.mlflow.iris", "champion")
        features = np.array([[0.0, 1.0], [1.0, 0.0]])
        try:
            mlflow.set_tracking_uri(source_url)
            mlflow.set_registry_uri(source_url)
            expected = mlflow.pyfunc.load_model("models:/iris@champion").predict(features)
            mlflow.set_tracking_uri(service.url)
            # The version's source is its logged model, whose files are in the volume.
            loaded = mlflow.pyfunc.load_model(champion.source).predict(features)
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
        assert list(loaded) == list(expected)
