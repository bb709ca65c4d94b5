"""SQLite for concurrent writers: the embedded store most users start on.

WAL journal mode (set once when the schema is prepared; it is persistent in the database
file) lets readers go on while a writer commits; every connection waits up to
`BUSY_TIMEOUT_SECONDS` for the write lock instead of failing after sqlite3's 5 s; and
`synchronous=NORMAL`, which in WAL mode keeps every committed transaction through a crash of
the process (a power loss can lose the last transactions before a checkpoint, never corrupt).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlalchemy

# Writers queue for SQLite's one write lock; a request should wait its turn rather than fail.
# The MLflow client gives a request 120 s (MLFLOW_HTTP_REQUEST_TIMEOUT); waiting half of it
# leaves time to answer with an error the client can read.
BUSY_TIMEOUT_SECONDS = 60
_installed = False


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
