"""One writer at a time on an embedded SQLite database, queued instead of polled.

SQLite admits one write transaction at a time; a connection that finds the lock taken sleeps
(1, 2, 5 ... 100 ms) and tries again, so under concurrent writers the lock sits idle while
waiters sleep. The gate queues writers before SQLite does: threads of a worker on a lock,
workers on an exclusive `flock` of a file beside the database; the next writer starts as soon
as the last one commits. Held from a thread's first INSERT/UPDATE/DELETE to its commit or
rollback, as SQLite's own write lock is.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import time
from typing import Any

import sqlalchemy
import sqlalchemy.orm

log = logging.getLogger("mlflow_app.write_gate")
_WRITE_STATEMENT = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
# Another worker holds the file lock: how often to try again. One thread per worker polls (the
# others wait on the worker's lock), so this costs little and bounds the idle gap.
_RETRY_SECONDS = 0.0005
_gates: dict[str, WriteGate] = {}
_gates_lock = threading.Lock()
_opening = threading.Lock()


def _fresh_locks_in_child() -> None:
    # A lock some other thread held at fork() stays held for ever in the child.
    global _gates_lock, _opening
    _gates_lock, _opening = threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


class WriteGate:
    """Exclusive write access to one database file for one thread at a time, across processes.

    Reentrant within a thread (MLflow nests sessions, and the tracking and registry stores
    share the file). After `timeout` seconds a writer goes on without the gate, so a stuck
    holder degrades to SQLite's own busy timeout rather than blocking writes for good.
    """

    def __init__(self, lock_path: str, timeout: float) -> None:
        self.lock_path = lock_path
        self.timeout = timeout
        self._pid = -1

    def enter(self) -> bool:
        """Wait for the gate; True when this thread now holds it."""
        self._open_for_this_process()
        me = threading.get_ident()
        if self._owner == me:
            return True
        deadline = time.monotonic() + self.timeout
        if not self._threads.acquire(timeout=self.timeout):
            return False
        if not self._lock_file(deadline):
            self._threads.release()
            return False
        self._owner = me
        return True

    def leave(self) -> None:
        """Release the gate if the calling thread holds it (its writes committed or rolled back)."""
        if self.held_here():
            self._owner = None
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._threads.release()

    def held_here(self) -> bool:
        return self._pid == os.getpid() and self._owner == threading.get_ident()

    def _lock_file(self, deadline: float) -> bool:
        while self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(_RETRY_SECONDS)
            except OSError as error:
                self._without_file_lock(error)
        return True

    def _without_file_lock(self, error: OSError) -> None:
        # A filesystem without flock: this worker's threads still queue; workers meet at
        # SQLite's own lock, as they would without the gate.
        log.warning(
            "write gate: no file lock at %s (%s); workers wait on SQLite's lock",
            self.lock_path,
            error.strerror or error,
        )
        self._fd = None

    def _open_for_this_process(self) -> None:
        # A forked worker must not share its parent's lock state or open file description (a
        # flock belongs to the description, so parent and child would count as one holder).
        # A worker's threads arrive together at its first write: one of them opens.
        if self._pid == os.getpid():
            return
        with _opening:
            if self._pid != os.getpid():
                self._threads = threading.Lock()
                self._owner: int | None = None
                self._fd: int | None = None
                try:
                    self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except OSError as error:
                    self._without_file_lock(error)
                self._pid = os.getpid()


def gate_for(database: str, timeout: float) -> WriteGate:
    """The one gate of a database file in this process (both stores' engines share it)."""
    path = os.path.abspath(database)
    with _gates_lock:
        return _gates.setdefault(path, WriteGate(f"{path}.write-lock", timeout))


def gate_engine(engine: sqlalchemy.engine.Engine, timeout: float) -> WriteGate | None:
    """Make every write through `engine` pass its database's gate, released when the
    connection goes back to the pool (call once per engine); None for an in-memory database."""
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    gate = gate_for(database, timeout)

    def before_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if _WRITE_STATEMENT.match(statement):
            gate.enter()

    sqlalchemy.event.listen(engine, "before_cursor_execute", before_execute)
    sqlalchemy.event.listen(engine, "checkin", lambda *_args: gate.leave())
    return gate


def release_when_sessions_end(sessions: sqlalchemy.orm.sessionmaker, gate: WriteGate) -> None:
    """Hand the gate on as soon as a session commits or rolls back, before its connection
    goes back to the pool."""
    sqlalchemy.event.listen(sessions, "after_commit", lambda *_args: gate.leave())
    sqlalchemy.event.listen(sessions, "after_rollback", lambda *_args: gate.leave())
