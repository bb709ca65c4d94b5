"""Every private MLflow name in mlflow_app/mlflow_internals.py still exists and still works.

An MLflow upgrade that renames one fails here, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy
import sqlalchemy.orm
from mlflow.entities import Experiment, LifecycleStage, LoggedModel, RunInfo, RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.server import constants, handlers

from mlflow_app import mlflow_internals as internals


@pytest.mark.parametrize(
    ("ours", "mlflows"),
    [
        (internals.SERVER_BACKEND_STORE, constants.BACKEND_STORE_URI_ENV_VAR),
        (internals.SERVER_REGISTRY_STORE, constants.REGISTRY_STORE_URI_ENV_VAR),
        (internals.SERVER_ARTIFACT_ROOT, constants.ARTIFACT_ROOT_ENV_VAR),
        (internals.SERVER_SERVE_ARTIFACTS, constants.SERVE_ARTIFACTS_ENV_VAR),
        (internals.SERVER_ARTIFACT_DESTINATION, constants.ARTIFACTS_DESTINATION_ENV_VAR),
        (internals.SERVER_STATIC_PREFIX, handlers.STATIC_PREFIX_ENV_VAR),
    ],
)
def test_the_server_environment_names_are_mlflows(ours: str, mlflows: str) -> None:
    assert ours == mlflows


def test_the_gateway_name_is_the_variable_mlflows_auth_reads() -> None:
    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    assert _MLFLOW_SGI_NAME.name == internals.SERVER_GATEWAY_NAME


def test_the_handlers_store_accessors_and_registries_exist() -> None:
    for name in (
        "_get_tracking_store",
        "_get_model_registry_store",
        "_get_artifact_repo_mlflow_artifacts",
    ):
        assert callable(getattr(handlers, name)), name
    tracking, registry = internals.store_registries()
    assert callable(tracking.register) and callable(registry.get_store_builder)
    assert internals.static_prefix_of("/api").endswith("/api")


def test_the_schema_helpers_create_and_report_a_schema(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    current, head, exists = internals.schema_revisions(engine)
    assert (current, exists) == (None, False) and head
    internals.create_schema(engine)
    assert internals.schema_revisions(engine) == (head, head, True)
    internals.upgrade_schema(engine)  # already current: a no-op, not an error
    engine.dispose()


def test_the_unity_catalog_registry_store_class_is_found() -> None:
    assert internals.uc_registry_store_class().__name__ == "UcModelRegistryStore"


def test_entity_fields_are_rewritten_and_read_back_through_public_properties() -> None:
    experiment = Experiment("1", "/Shared/x", "dbfs:/a", LifecycleStage.ACTIVE)
    internals.set_experiment_name(experiment, "x")
    internals.set_artifact_location(experiment, "mlflow-artifacts:/a")
    assert (experiment.name, experiment.artifact_location) == ("x", "mlflow-artifacts:/a")

    run = RunInfo(
        "r", "1", "u", RunStatus.to_string(RunStatus.RUNNING), 0, None, "ACTIVE", "dbfs:/r"
    )
    internals.set_run_artifact_uri(run, "mlflow-artifacts:/r")
    assert run.artifact_uri == "mlflow-artifacts:/r"

    model = LoggedModel("1", "m-1", "m", "dbfs:/m", 0, 0)
    internals.set_artifact_location(model, "mlflow-artifacts:/m")
    assert model.artifact_location == "mlflow-artifacts:/m"

    version = ModelVersion("c.s.m", "1", 0, source="dbfs:/v")
    internals.set_model_version_source(version, "mlflow-artifacts:/v")
    assert version.source == "mlflow-artifacts:/v"


def test_a_uc_search_result_becomes_a_version_the_handler_can_serialise() -> None:
    from mlflow.entities.model_registry.model_version_search import ModelVersionSearch

    found = ModelVersionSearch(
        name="main.ml.iris", version="3", creation_timestamp=1, source="models:/m-1"
    )
    plain = internals.plain_model_version(found)
    proto = plain.to_proto()  # a ModelVersionSearch raises here
    assert (proto.name, proto.version, proto.source) == ("main.ml.iris", "3", "models:/m-1")
    assert plain.tags == {} and plain.aliases == []


def test_mlflows_sqlite_sessions_issue_pragmas_and_ours_do_not(tmp_path: Path) -> None:
    from mlflow.store.db.utils import _get_managed_session_maker

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    statements: list[str] = []
    sqlalchemy.event.listen(
        engine, "before_cursor_execute", lambda _c, _k, sql, *_a: statements.append(sql)
    )
    sessions = sqlalchemy.orm.sessionmaker(bind=engine)
    with _get_managed_session_maker(sessions, "sqlite")() as session:
        session.execute(sqlalchemy.text("SELECT 1"))
    assert any("busy_timeout" in s for s in statements)  # the premise of ours
    statements.clear()
    with internals.managed_sessions_without_pragmas(sessions)() as session:
        session.execute(sqlalchemy.text("SELECT 1"))
    assert statements == ["SELECT 1"]
    engine.dispose()
