"""SQLite tuning: WAL once per database file, busy timeout and synchronous per connection,
MLflow's session settings once per connection, and store writes through the write gate."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import sqlalchemy

from mlflow_app.sqlite_writes import (
    BUSY_TIMEOUT_SECONDS,
    set_up_sessions,
    tune_every_sqlite_connection,
    use_wal,
)
from mlflow_app.write_gate import WriteGate

fork = multiprocessing.get_context("fork")


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


def sqlite_store(tmp_path: Path):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tune_every_sqlite_connection()
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))
    set_up_sessions(store)
    return store


def test_store_sessions_keep_our_busy_timeout_and_mlflows_settings_without_pragmas(
    tmp_path: Path,
) -> None:
    store = sqlite_store(tmp_path)
    statements: list[str] = []
    sqlalchemy.event.listen(
        store.engine, "before_cursor_execute", lambda _c, _k, sql, *_a: statements.append(sql)
    )
    with store.ManagedSessionMaker() as session:
        run = session.execute
        # MLflow's sessions set busy_timeout=20 s on the connection, under ours.
        assert run(sqlalchemy.text("PRAGMA busy_timeout")).scalar() == BUSY_TIMEOUT_SECONDS * 1000
        assert run(sqlalchemy.text("PRAGMA foreign_keys")).scalar() == 1
        assert run(sqlalchemy.text("SELECT 'a' LIKE 'A'")).scalar() == 0  # case_sensitive_like
    statements.clear()
    store.get_experiment("0")
    assert statements and not [s for s in statements if "PRAGMA" in s.upper()]
    store.engine.dispose()


def test_a_store_write_waits_at_the_gate_while_reads_go_on(tmp_path: Path) -> None:
    from mlflow.entities import Metric

    store = sqlite_store(tmp_path)
    run_id = store.create_run("0", "user", 0, [], "run").info.run_id
    holding, release = threading.Event(), threading.Event()

    def hold_in_other_process() -> None:  # as another worker writing
        held, done = fork.Event(), fork.Event()
        child = fork.Process(
            target=_hold, args=(str(tmp_path / "mlflow.db.write-lock"), held, done)
        )
        child.start()
        held.wait(30)
        holding.set()
        release.wait(30)
        done.set()
        child.join(30)

    holder = threading.Thread(target=hold_in_other_process)
    holder.start()
    assert holding.wait(30)
    writer = threading.Thread(target=lambda: store.log_metric(run_id, Metric("m", 1.0, 0, 7)))
    writer.start()
    writer.join(0.5)
    assert writer.is_alive()  # queued at the gate
    assert store.get_run(run_id).info.run_id == run_id  # reads are not gated
    release.set()
    writer.join(60)
    holder.join(30)
    assert [m.step for m in store.get_metric_history(run_id, "m")] == [7]
    store.engine.dispose()


def _hold(lock_path: str, held, done) -> None:
    gate = WriteGate(lock_path, timeout=30)
    gate.enter()
    held.set()
    done.wait(30)
    gate.leave()
