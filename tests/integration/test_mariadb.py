"""The service on a real MariaDB server (MySQL protocol, PyMySQL driver)."""

from __future__ import annotations

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from tests.integration.mariadb import PASSWORD, MariaDB, create_mariadb, mariadb_available
from tests.service_process import free_port

pytestmark = pytest.mark.skipif(
    not mariadb_available(), reason="Debian mariadb-server is not installed (.ci/run installs it)"
)


@pytest.fixture
def mariadb() -> MariaDB:
    server = create_mariadb(free_port())
    yield server
    server.stop()


def test_tracking_and_registry_on_mariadb(run_server, mariadb: MariaDB) -> None:
    server = run_server(MLFLOW_BACKEND_STORE_URI=mariadb.uri)
    client = MlflowClient(server.url, server.url)
    run_id = client.create_run(client.create_experiment("maria-exp")).info.run_id
    for step in range(10):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    client.create_registered_model("maria-model")
    mlflow.set_tracking_uri(server.url)

    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(10))
    assert client.get_registered_model("maria-model").name == "maria-model"
    ready = requests.get(f"{server.url}/readyz", timeout=30).json()
    assert {c["name"]: c["status"] for c in ready["checks"]}["database_connections"] == "ok"
    assert "created the MLflow schema" in server.log()
    assert PASSWORD not in server.log()
    assert int(mariadb.sql("SELECT COUNT(*) FROM mlflow.alembic_version")) == 1
