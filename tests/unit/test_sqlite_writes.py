"""SQLite tuning: WAL once per database file, busy timeout and synchronous per connection."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy

from mlflow_app.sqlite_writes import BUSY_TIMEOUT_SECONDS, tune_every_sqlite_connection, use_wal


def test_wal_is_set_in_the_file_and_each_connection_is_tuned(tmp_path: Path) -> None:
    tune_every_sqlite_connection()
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert use_wal(engine) == "wal"
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with other.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"  # persistent in the file
        assert pragma("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_SECONDS * 1000
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
    engine.dispose()
    other.dispose()
