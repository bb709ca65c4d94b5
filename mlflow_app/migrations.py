"""Database schema: create or upgrade it once per deployment, never once per worker or replica.

Runs in the gunicorn master before the self-check (and from `mlflow-app db upgrade`). Replicas
starting together take a database lock (PostgreSQL advisory lock, MySQL GET_LOCK, a file lock
for SQLite), so exactly one migrates and the others find the schema current. MLflow's own
migration functions (those `mlflow db upgrade` runs) do the work.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy

from mlflow_app.config import Settings, mask_uri, uri_scheme
from mlflow_app.database_outage import with_connect_timeout
from mlflow_app.mlflow_internals import create_schema, schema_revisions, upgrade_schema
from mlflow_app.sqlite_writes import use_wal

_LOCK_NAME = "mlflow_app_schema_migration"
_LOCK_WAIT_SECONDS = 600


class SchemaError(RuntimeError):
    """The schema is not what this version needs; the message says what to run."""


_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def sql_store_uris(settings: Settings) -> list[str]:
    """The distinct SQL URIs the tracking store and registry use."""
    uris = (settings.backend_store_uri, settings.registry_store_uri)
    sql = [uri for uri in uris if uri_scheme(uri) in _SQL_SCHEMES]
    return list(dict.fromkeys(sql))


def prepare_schema(settings: Settings, mode: str | None = None) -> list[str]:
    """Bring every SQL store to the schema this MLflow needs (`auto`), or verify it (`check`).

    `mode` defaults to MLFLOW_APP_MIGRATE. Returns one line per database: what was found or done.
    """
    mode = mode or settings.migrate
    if mode == "off":
        return []
    return [_prepare(uri, mode) for uri in sql_store_uris(settings)]


def _prepare(uri: str, mode: str) -> str:
    engine = sqlalchemy.create_engine(with_connect_timeout(uri), poolclass=sqlalchemy.pool.NullPool)
    shown = mask_uri(uri)
    try:
        with _migration_lock(engine):
            current, head, tables_exist = schema_revisions(engine)
            fresh = current is None and not tables_exist
            if engine.dialect.name == "sqlite":
                use_wal(engine)  # persistent in the file: readers no longer wait for writers
            if current == head:
                return f"{shown}: schema is current ({head})"
            found = "no MLflow tables" if fresh else f"schema {current}"
            if mode == "check":
                raise SchemaError(
                    f"{shown} has {found} but this version needs {head}; "
                    "run `mlflow-app db upgrade` (back up the database first), "
                    "or set MLFLOW_APP_MIGRATE=auto"
                )
            if fresh:
                create_schema(engine)
                return f"{shown}: created the MLflow schema ({head})"
            upgrade_schema(engine)
            return f"{shown}: upgraded the schema from {current} to {head}"
    finally:
        engine.dispose()


@contextmanager
def _migration_lock(engine: sqlalchemy.engine.Engine) -> Iterator[None]:
    dialect = engine.dialect.name
    if dialect == "sqlite":
        with _file_lock(engine):
            yield
        return
    with engine.connect() as connection:
        if dialect == "postgresql":
            key = int(hashlib.sha256(_LOCK_NAME.encode()).hexdigest()[:15], 16)
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        elif dialect == "mysql":
            got = connection.execute(
                sqlalchemy.text("SELECT GET_LOCK(:n, :t)"),
                {"n": _LOCK_NAME, "t": _LOCK_WAIT_SECONDS},
            ).scalar()
            if got != 1:
                raise SchemaError(
                    f"another replica held the migration lock for "
                    f"{_LOCK_WAIT_SECONDS} s; check for a stuck migration"
                )
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": _LOCK_NAME})
        else:  # SQL Server: no portable lock here; run one replica for upgrades
            yield


@contextmanager
def _file_lock(engine: sqlalchemy.engine.Engine) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
