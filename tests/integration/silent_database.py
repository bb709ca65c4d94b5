"""A database that never answers: a port that accepts connections and says nothing.

A hung or black-holed database looks like this to a client, unlike a stopped one, which
refuses at once. Used by the tests and the hostile-traffic benchmark.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def silent_database() -> Iterator[int]:
    """Yields the port; every connection is accepted and held open until the end."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    listener.settimeout(0.5)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        for sock in held:
            sock.close()
        listener.close()
