"""SQLite for concurrent writers: the embedded store most users start on.

WAL journal mode (set once when the schema is prepared; it is persistent in the database
file) lets readers go on while a writer commits; every connection waits up to
`BUSY_TIMEOUT_SECONDS` for the write lock instead of failing after sqlite3's 5 s; and
`synchronous=NORMAL`, which in WAL mode keeps every committed transaction through a crash of
the process (a power loss can lose the last transactions before a checkpoint, never corrupt).
MLflow's stores issue their connection PRAGMAs on every session; ours set them once per
connection, and their writes queue at the write gate (`write_gate.py`).
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from typing import Any

import sqlalchemy
import sqlalchemy.orm

from mlflow_app.config import Settings
from mlflow_app.config_rules import uri_scheme
from mlflow_app.mlflow_internals import managed_sessions_without_pragmas
from mlflow_app.store_hooks import StoreBuilder, wrap_store_builders
from mlflow_app.write_gate import WriteGate, gate_engine, release_when_sessions_end

# Writers queue for SQLite's one write lock; a request should wait its turn rather than fail.
# The MLflow client gives a request 120 s (MLFLOW_HTTP_REQUEST_TIMEOUT); waiting half of it
# leaves time to answer with an error the client can read.
BUSY_TIMEOUT_SECONDS = 60
_installed = False
_engines_lock = threading.Lock()
_engine_gates: weakref.WeakKeyDictionary[sqlalchemy.engine.Engine, WriteGate | None] = (
    weakref.WeakKeyDictionary()
)


def use_wal(engine: sqlalchemy.engine.Engine) -> str:
    """Put the database in WAL mode; returns the journal mode now in force."""
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()
    return str(mode).lower()


def tune_every_sqlite_connection() -> None:
    """Busy timeout and synchronous=NORMAL on each SQLite connection any engine opens
    (MLflow builds its engines itself, so the hook is SQLAlchemy's engine-wide event)."""
    global _installed
    if not _installed:
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", _tune)
        _installed = True


def _tune(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()


def sqlite_sessions(settings: Settings) -> None:
    """Store wrapper: a SQLite store's sessions skip MLflow's three PRAGMA statements per
    session (a third of a metric write's statements, and their busy_timeout of 20 s would
    override ours), each connection of the store's engine gets the same settings once, and
    its writes pass the write gate."""

    def wrap(builder: StoreBuilder, uri: str) -> StoreBuilder:
        if uri_scheme(uri) != "sqlite":
            return builder

        def build(*args: Any, **kwargs: Any) -> Any:
            store = builder(*args, **kwargs)
            if getattr(store, "read_engine", None) is None:  # replica routing: MLflow's own
                set_up_sessions(store)
            return store

        return build

    wrap_store_builders(settings, wrap)


def set_up_sessions(store: Any) -> None:
    """Give one SQL store on SQLite our sessions: settings per connection, writes gated."""
    gate = _set_up_engine(store.engine)
    sessions = sqlalchemy.orm.sessionmaker(bind=store.engine)
    if gate is not None:
        release_when_sessions_end(sessions, gate)
    store.ManagedSessionMaker = managed_sessions_without_pragmas(sessions)


def _set_up_engine(engine: sqlalchemy.engine.Engine) -> WriteGate | None:
    """Once per engine (the stores built for one URI share theirs)."""
    with _engines_lock:
        if engine not in _engine_gates:
            sqlalchemy.event.listen(engine, "connect", _as_mlflow_sessions_expect)
            engine.dispose()  # connections pooled before the listener lack the settings
            _engine_gates[engine] = gate_engine(engine, BUSY_TIMEOUT_SECONDS)
        return _engine_gates[engine]


def _as_mlflow_sessions_expect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA case_sensitive_like = true")
    cursor.close()
