"""Every private MLflow name we rely on, in one place, each with why no public API serves.

An MLflow upgrade that renames one fails `tests/unit/test_mlflow_internals.py`, naming it,
instead of failing deep inside a request. MLflow is imported inside each function, so this
module (and the settings code that uses its constants) imports without loading MLflow.
"""

from __future__ import annotations

from typing import Any

# The environment `mlflow server` hands its Flask app (mlflow/server/constants.py calls them
# internal); the app reads them at import, and no public API configures it.
SERVER_BACKEND_STORE = "_MLFLOW_SERVER_FILE_STORE"
SERVER_REGISTRY_STORE = "_MLFLOW_SERVER_REGISTRY_STORE"
SERVER_ARTIFACT_ROOT = "_MLFLOW_SERVER_ARTIFACT_ROOT"
SERVER_SERVE_ARTIFACTS = "_MLFLOW_SERVER_SERVE_ARTIFACTS"
SERVER_ARTIFACT_DESTINATION = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"
SERVER_STATIC_PREFIX = "_MLFLOW_STATIC_PREFIX"
SERVER_GATEWAY_NAME = "_MLFLOW_SGI_NAME"  # MLflow's auth app picks Flask or FastAPI wiring by it


# --- the stores and artifact repository the server's handlers use ---------------------------
# The handlers build and cache one store per URI; checks must ask those same stores (with our
# wrappers), not build new ones.
def tracking_store() -> Any:
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store()


def registry_store() -> Any:
    from mlflow.server.handlers import _get_model_registry_store

    return _get_model_registry_store()


def proxied_artifact_repository() -> Any:
    from mlflow.server.handlers import _get_artifact_repo_mlflow_artifacts

    return _get_artifact_repo_mlflow_artifacts()


def store_registries() -> tuple[Any, Any]:
    """The tracking and registry store registries: `register()` on them is the only seam
    around store construction (the one store plugins use)."""
    from mlflow.server import handlers

    return handlers._tracking_store_registry, handlers._model_registry_store_registry


def static_prefix_of(path: str) -> str:
    """`path` under the server's static prefix, as MLflow mounts its own routes."""
    from mlflow.server.handlers import _add_static_prefix

    return _add_static_prefix(path)


# --- schema migrations: `mlflow db upgrade` is a CLI, with no function to call ----------------
def schema_revisions(engine: Any) -> tuple[str | None, str, bool]:
    """(the database's revision or None, the revision this MLflow needs, whether MLflow's
    tables exist)."""
    from mlflow.store.db.utils import (
        _all_tables_exist,
        _get_latest_schema_revision,
        _get_schema_version,
    )

    return _get_schema_version(engine), _get_latest_schema_revision(), _all_tables_exist(engine)


def create_schema(engine: Any) -> None:
    from mlflow.store.db.utils import _initialize_tables

    _initialize_tables(engine)


def upgrade_schema(engine: Any) -> None:
    from mlflow.store.db.utils import _upgrade_db

    _upgrade_db(engine)


# --- SQL store sessions: a store's session factory is an attribute MLflow sets itself -----------
def managed_sessions_without_pragmas(sessions: Any) -> Any:
    """MLflow's managed session factory (commit, rollback, its error codes) over a SQLite
    sessionmaker, minus the three PRAGMAs it issues on every session for SQLite (foreign_keys,
    busy_timeout=20 s, case_sensitive_like). They are connection settings, so `sqlite_writes`
    sets them once per connection; MLflow applies them only when the type it is given is
    "sqlite"."""
    from mlflow.store.db.utils import _get_managed_session_maker

    return _get_managed_session_maker(sessions, "sqlite, set up per connection")


# --- Unity Catalog: the registry store's class lives in a private package ---------------------
def uc_registry_store_class() -> type:
    from mlflow.store._unity_catalog.registry.rest_store import UcModelRegistryStore

    return UcModelRegistryStore


# --- entity fields the stores fill and we rewrite (their properties are read-only) ------------
def set_experiment_name(experiment: Any, name: str) -> None:
    experiment._set_name(name)


def set_run_artifact_uri(run_info: Any, uri: str | None) -> None:
    run_info._artifact_uri = uri


def set_artifact_location(entity: Any, uri: str | None) -> None:
    """An Experiment's or a LoggedModel's artifact location."""
    entity._artifact_location = uri


def set_model_version_source(model_version: Any, uri: str | None) -> None:
    model_version._source = uri


def plain_model_version(found: Any) -> Any:
    """A ModelVersion with the fields of a UC search result (a ModelVersionSearch, whose `tags`
    and `aliases` are methods that raise, so MLflow's handler cannot serialise it). No public
    constructor copies a version; its fields are its instance attributes."""
    from mlflow.entities.model_registry import ModelVersion

    plain = ModelVersion.__new__(ModelVersion)
    plain.__dict__.update(vars(found))
    return plain
