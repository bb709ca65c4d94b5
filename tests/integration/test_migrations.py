"""Schema migrations on a real PostgreSQL: once per deployment, serialized across replicas."""

from __future__ import annotations

import pytest
import requests
import sqlalchemy

from tests.integration.postgres import Postgres, create_postgres, postgres_bin
from tests.service_process import (
    free_port,
    run_to_exit,
    service_env,
    start_gunicorn,
    stop,
    wait_ready,
)

pytestmark = pytest.mark.skipif(
    postgres_bin() is None, reason="Debian postgresql is not installed (.ci/run installs it)"
)
OLD_REVISION_STEPS_BEHIND = 10


@pytest.fixture
def postgres() -> Postgres:
    server = create_postgres(free_port())
    yield server
    server.stop()


def revisions() -> list[str]:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    return [
        r.revision for r in ScriptDirectory.from_config(_get_alembic_config("")).walk_revisions()
    ]


def create_old_schema(uri: str) -> str:
    """A database as an older MLflow left it: initial tables, migrated only part of the way."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    old = revisions()[OLD_REVISION_STEPS_BEHIND]
    engine = sqlalchemy.create_engine(uri)
    InitialBase.metadata.create_all(engine)
    with engine.begin() as connection:
        config = _get_alembic_config(uri)
        config.attributes["connection"] = connection
        command.upgrade(config, old)
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO experiments (name, artifact_location, lifecycle_stage) "
                "VALUES ('kept-through-upgrade', '/tmp/x', 'active')"
            )
        )
    engine.dispose()
    return old


def schema_version(postgres: Postgres) -> list[str]:
    return postgres.psql("SELECT version_num FROM alembic_version", "mlflow").split()


def test_replicas_starting_together_migrate_once(postgres: Postgres, tmp_path) -> None:
    processes, logs = [], []
    for replica in range(2):
        port = free_port()
        env = service_env(
            tmp_path / f"r{replica}",
            port,
            MLFLOW_BACKEND_STORE_URI=postgres.uri,
            MLFLOW_WORKERS="1",
        )
        (tmp_path / f"r{replica}").mkdir()
        logs.append(tmp_path / f"replica{replica}.log")
        processes.append((start_gunicorn(env, logs[-1]), port))
    try:
        for process, port in processes:
            wait_ready(f"http://127.0.0.1:{port}", process, "/readyz")
    finally:
        for process, _ in processes:
            stop(process)
    outputs = [log.read_text() for log in logs]
    assert sum("created the MLflow schema" in o for o in outputs) == 1, outputs
    assert sum("schema is current" in o for o in outputs) == 1, outputs
    assert schema_version(postgres) == [revisions()[0]]


def test_check_mode_stops_on_an_old_schema_with_the_command(postgres: Postgres, tmp_path):
    old = create_old_schema(postgres.uri)
    code, output = run_to_exit(
        tmp_path, MLFLOW_BACKEND_STORE_URI=postgres.uri, MLFLOW_APP_MIGRATE="check"
    )
    assert code != 0
    assert f"has schema {old} but this version needs {revisions()[0]}" in output
    assert "run `mlflow-app db upgrade`" in output
    assert postgres.uri.split("@")[0].split(":")[-1] not in output  # the password
    assert schema_version(postgres) == [old]


def test_auto_mode_upgrades_an_old_schema_and_keeps_the_data(postgres: Postgres, run_server):
    create_old_schema(postgres.uri)
    server = run_server(MLFLOW_BACKEND_STORE_URI=postgres.uri)
    assert schema_version(postgres) == [revisions()[0]]
    found = requests.post(
        f"{server.url}/api/2.0/mlflow/experiments/search", json={"max_results": 10}, timeout=30
    ).json()["experiments"]
    assert "kept-through-upgrade" in {e["name"] for e in found}
    assert "upgraded the schema from" in server.log()
