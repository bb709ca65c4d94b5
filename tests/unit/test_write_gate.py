"""The write gate: one writer per database file across threads and processes, handed on at
release, freed by a holder's death, and never a reason for a writer to wait for ever."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

from mlflow_app.write_gate import WriteGate

fork = multiprocessing.get_context("fork")


def hold_until_told(lock_path: str, holding, release) -> None:
    gate = WriteGate(lock_path, timeout=30)
    assert gate.enter()
    holding.set()
    release.wait(30)
    gate.leave()


def enter_then_die(lock_path: str, holding) -> None:
    WriteGate(lock_path, timeout=30).enter()
    holding.set()
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_writer_in_another_process_waits_and_enters_when_the_holder_leaves(
    tmp_path: Path,
) -> None:
    lock_path = str(tmp_path / "db.write-lock")
    holding, release = fork.Event(), fork.Event()
    holder = fork.Process(target=hold_until_told, args=(lock_path, holding, release))
    holder.start()
    assert holding.wait(30)
    gate = WriteGate(lock_path, timeout=30)
    entered: list[bool] = []
    waiter = threading.Thread(target=lambda: entered.append(gate.enter()))
    waiter.start()
    waiter.join(0.5)
    assert entered == []  # still queued behind the other process
    release.set()
    waiter.join(30)
    assert entered == [True]
    holder.join(30)


def test_threads_take_turns_and_a_thread_reenters_the_gate_it_holds(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "db.write-lock"), timeout=30)
    assert gate.enter() and gate.enter()  # nested sessions of one thread
    order: list[str] = []

    def other_thread() -> None:
        gate.enter()
        order.append("other entered")
        gate.leave()

    other = threading.Thread(target=other_thread)
    other.start()
    other.join(0.5)
    order.append("first leaves")
    gate.leave()
    other.join(30)
    assert order == ["first leaves", "other entered"]
    assert not gate.held_here()


def test_a_holder_that_dies_frees_the_gate(tmp_path: Path) -> None:
    lock_path = str(tmp_path / "db.write-lock")
    holding = fork.Event()
    dying = fork.Process(target=enter_then_die, args=(lock_path, holding))
    dying.start()
    assert holding.wait(30)
    dying.join(30)
    assert dying.exitcode == -signal.SIGKILL
    assert WriteGate(lock_path, timeout=30).enter()  # not the timeout's way round


def test_a_stuck_holder_only_delays_a_writer_until_the_timeout(tmp_path: Path) -> None:
    lock_path = str(tmp_path / "db.write-lock")
    holding, release = fork.Event(), fork.Event()
    holder = fork.Process(target=hold_until_told, args=(lock_path, holding, release))
    holder.start()
    try:
        assert holding.wait(30)
        gate = WriteGate(lock_path, timeout=0.3)
        assert gate.enter() is False  # goes on, leaving the wait to SQLite's busy timeout
        assert not gate.held_here()
        gate.leave()  # harmless without the gate
    finally:
        release.set()
        holder.join(30)


def test_a_forked_child_does_not_inherit_its_parents_hold(tmp_path: Path) -> None:
    lock_path = str(tmp_path / "db.write-lock")
    gate = WriteGate(lock_path, timeout=0.3)
    assert gate.enter()
    result = fork.Queue()
    child = fork.Process(target=lambda: result.put(gate.enter()))
    child.start()
    child.join(30)
    assert result.get(timeout=5) is False  # the parent still holds it; the child queued
    gate.leave()


def threads_arrive_together(lock_path: str, result) -> None:
    gate = WriteGate(lock_path, timeout=30)  # first used by 8 threads at once, as in a worker
    start = threading.Barrier(8)
    inside, most_inside, entered = [0], [0], []
    count = threading.Lock()

    def write() -> None:
        start.wait()
        entered.append(gate.enter())
        with count:
            inside[0] += 1
            most_inside[0] = max(most_inside[0], inside[0])
        time.sleep(0.005)  # a write's length, for a second holder to show
        with count:
            inside[0] -= 1
        gate.leave()

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    result.put((entered, most_inside[0]))


def test_threads_arriving_together_at_a_new_worker_take_turns(tmp_path: Path) -> None:
    result = fork.Queue()
    worker = fork.Process(target=threads_arrive_together, args=(str(tmp_path / "l"), result))
    worker.start()
    entered, most_inside = result.get(timeout=60)
    worker.join(30)
    assert entered == [True] * 8 and most_inside == 1


def test_without_a_file_lock_the_threads_of_a_worker_still_take_turns(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    def no_flock(_fd: int, _operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    gate = WriteGate(str(tmp_path / "db.write-lock"), timeout=30)
    assert gate.enter()  # a write goes on
    assert "no file lock" in caplog.text
    other = threading.Thread(target=lambda: (gate.enter(), gate.leave()))
    other.start()
    other.join(0.3)
    assert other.is_alive()  # still queued behind this thread
    gate.leave()
    other.join(30)
    assert not other.is_alive()
