"""The gunicorn worker: each request is read whole in the worker's event loop before a thread
serves it, so slow, idle or stalled clients hold a socket, never one of the few threads.

gunicorn's gthread worker hands a connection to a thread as soon as a byte arrives, and the
thread then blocks until the client has sent everything. Here the main loop buffers the head
(at most `MAX_HEAD_BYTES`) and the body (spooled to a temporary file beyond `SPOOL_BYTES`),
with a deadline per request; only a complete request reaches gunicorn's parser and MLflow. Any
error gunicorn answers itself (a malformed request, an oversized header) is MLflow's JSON error,
and on shutdown idle connections are closed at once instead of after the keep-alive timeout.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import selectors
import socket
import sys
import tempfile
import time
from functools import partial
from http import HTTPStatus
from typing import IO, Any

from gunicorn.http import errors as http_errors
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn, ThreadWorker

from mlflow_app.errors import error_body

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; uvicorn's h11 allows 16 KiB
SPOOL_BYTES = 1024 * 1024  # bodies beyond this wait in a temporary file, not in memory
_RECV_BYTES = 256 * 1024
_HEAD_END = b"\r\n\r\n"


class IncomingRequest:
    """A request being received: its bytes so far and where its end will be."""

    def __init__(self, deadline: float) -> None:
        self.head = bytearray()
        self.body_in_memory = bytearray()
        self.spool: IO[bytes] | None = None
        self.head_complete = False
        self.remaining: int | None = None  # body bytes still to come (Content-Length)
        self.chunks: ChunkedBodyEnd | None = None
        self.deadline = deadline
        self.received_any = False

    def feed(self, data: bytes) -> None:
        """Take bytes from the socket; raises `BadFraming` when the head cannot be served."""
        self.received_any = True
        if not self.head_complete:
            self.head += data
            end = self.head.find(_HEAD_END)
            if end < 0:
                if len(self.head) > MAX_HEAD_BYTES:
                    raise BadFraming(431, "The request line and headers exceed 64 KiB.")
                return
            if end + 4 > MAX_HEAD_BYTES:
                raise BadFraming(431, "The request line and headers exceed 64 KiB.")
            data = bytes(self.head[end + 4 :])
            del self.head[end + 4 :]
            self.head_complete = True
            self.frame_body()
        self.take_body(data)

    def frame_body(self) -> None:
        """Read Content-Length / Transfer-Encoding from the head (gunicorn re-validates)."""
        length, chunked = None, False
        for line in bytes(self.head).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                if not value.strip().isdigit() or length is not None:
                    raise BadFraming(400, "Content-Length is not a single whole number.")
                length = int(value.strip())
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
        if chunked:
            self.chunks = ChunkedBodyEnd()
        else:
            self.remaining = length or 0

    def take_body(self, data: bytes) -> None:
        if not data:
            return
        if self.chunks is not None:
            self.chunks.scan(data)
        elif self.remaining is not None:
            self.remaining -= len(data)
        if self.spool is None and len(self.body_in_memory) + len(data) > SPOOL_BYTES:
            # Closed by BufferedUnreader once read, or by the worker when the client leaves.
            self.spool = tempfile.TemporaryFile(prefix="mlflow-app-body-")  # noqa: SIM115
            self.spool.write(self.body_in_memory)
            self.body_in_memory = bytearray()
        if self.spool is not None:
            self.spool.write(data)
        else:
            self.body_in_memory += data

    @property
    def complete(self) -> bool:
        if not self.head_complete:
            return False
        if self.chunks is not None:
            return self.chunks.done
        return self.remaining is not None and self.remaining <= 0

    @property
    def expects_continue(self) -> bool:
        lowered = bytes(self.head).lower()
        return b"\r\nexpect: 100-continue" in lowered or b"\r\nexpect:100-continue" in lowered


class ChunkedBodyEnd:
    """Finds where a chunked body ends (the zero-size chunk and its trailers)."""

    def __init__(self) -> None:
        self.line = bytearray()
        self.skip = 0  # chunk data (and its CRLF) still to pass over
        self.in_trailers = False
        self.done = False

    def scan(self, data: bytes) -> None:
        index = 0
        while index < len(data) and not self.done:
            if self.skip:
                step = min(self.skip, len(data) - index)
                self.skip -= step
                index += step
                continue
            newline = data.find(b"\n", index)
            if newline < 0:
                self.line += data[index:]
                if len(self.line) > 4096:
                    raise BadFraming(400, "A chunk-size line is too long.")
                return
            self.line += data[index:newline]
            index = newline + 1
            self.end_of_line(bytes(self.line).rstrip(b"\r"))
            self.line = bytearray()

    def end_of_line(self, line: bytes) -> None:
        if self.in_trailers:
            self.done = not line
            return
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadFraming(400, "A chunk size is not hexadecimal.") from None
        if size == 0:
            self.in_trailers = True
        else:
            self.skip = size + 2


class BadFraming(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BufferedUnreader(SocketUnreader):
    """gunicorn's socket reader, served first from what the event loop already received."""

    def __init__(self, sock: socket.socket, read_timeout: float) -> None:
        super().__init__(sock)
        self.spool: IO[bytes] | None = None
        self.read_timeout = read_timeout

    def load(self, request: IncomingRequest) -> None:
        self.buf.seek(0, os.SEEK_END)  # after any bytes left from the previous request
        self.buf.write(bytes(request.head) + bytes(request.body_in_memory))
        if request.spool is not None:
            request.spool.seek(0)
            self.spool = request.spool

    def chunk(self) -> bytes:
        if self.spool is not None:
            data = self.spool.read(self.mxchunk)
            if data:
                return data
            self.spool.close()
            self.spool = None
        # Only reached if framing disagreed with gunicorn's parser: never block for long.
        readable, _, _ = select.select([self.sock], [], [], self.read_timeout)
        if not readable:
            raise http_errors.NoMoreData(b"")
        return self.sock.recv(self.mxchunk)


class BufferedThreadWorker(ThreadWorker):
    """gthread, with requests buffered in the event loop; see the module docstring."""

    # Seconds a client has to send a whole request head, or between two reads of its body,
    # and an idle connection's life; set from MLFLOW_APP_CLIENT_TIMEOUT_SECONDS by gunicorn.conf.
    client_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.incoming: dict[TConn, IncomingRequest] = {}

    def accept(self, listener: socket.socket) -> None:
        if self.cfg.is_ssl:  # TLS terminates in front of the service (see docs/front-door.md)
            super().accept(listener)
            return
        try:
            client_sock, client_addr = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        self.receive(conn)

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A keep-alive connection speaks again: buffer its next request too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.receive(conn)

    def finish_request(self, conn: TConn, fs: Any) -> None:
        super().finish_request(conn, fs)
        pipelined = conn in self.keepalived_conns and conn.parser.unreader.buf.tell()
        if pipelined:  # the next request is already here: the socket may never turn readable
            self.on_client_socket_readable(conn, conn.sock)

    def receive(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        request = IncomingRequest(time.monotonic() + self.client_timeout)
        self.incoming[conn] = request
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_bytes, conn))
        leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        if leftover:
            self.take(conn, request, leftover)

    def on_bytes(self, conn: TConn, client: socket.socket) -> None:
        request = self.incoming[conn]
        try:
            data = client.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        self.take(conn, request, data)

    def take(self, conn: TConn, request: IncomingRequest, data: bytes) -> None:
        try:
            request.feed(data)
        except BadFraming as error:
            self.refuse(conn, error.status, str(error))
            return
        if request.head_complete and not request.complete and request.expects_continue:
            self.continue_body(conn, request)
        if not request.complete:
            if request.head_complete:  # a body may take long, but may not stall
                request.deadline = time.monotonic() + self.client_timeout
            return
        self.poller.unregister(conn.sock)
        del self.incoming[conn]
        self.dispatch(conn, request)

    def continue_body(self, conn: TConn, request: IncomingRequest) -> None:
        """Answer `Expect: 100-continue` now, and drop it so gunicorn does not answer again."""
        lines = bytes(request.head).split(b"\r\n")
        kept = [
            line for line in lines if not line.lower().replace(b" ", b"").startswith(b"expect:")
        ]
        request.head = bytearray(b"\r\n".join(kept))
        with contextlib.suppress(OSError):
            conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def dispatch(self, conn: TConn, request: IncomingRequest) -> None:
        conn.sock.setblocking(True)
        conn.init()
        if not isinstance(conn.parser.unreader, BufferedUnreader):
            conn.parser.unreader = BufferedUnreader(conn.sock, self.client_timeout)
        conn.parser.unreader.load(request)
        conn.data_ready = True
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        """Close connections whose request did not arrive in time (or that are idle while
        the worker shuts down); a client that sent part of a request is told why."""
        super().murder_pending()
        now = time.monotonic()
        for conn, request in list(self.incoming.items()):
            if request.deadline <= now and request.received_any:
                self.refuse(conn, 408, "The request was not received in time.")
            elif request.deadline <= now or (not self.alive and not request.received_any):
                self.drop(conn)

    def murder_keepalived(self) -> None:
        if not self.alive:  # shutting down: an idle connection has nothing in flight
            for conn in self.keepalived_conns:
                conn.timeout = 0
        super().murder_keepalived()

    def drop(self, conn: TConn) -> None:
        request = self.incoming.pop(conn, None)
        if request is not None and request.spool is not None:
            request.spool.close()
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def refuse(self, conn: TConn, status: int, message: str) -> None:
        self.log.warning("Refused a request from %s: %s", _peer(conn.client), message)
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(1.0)
            conn.sock.sendall(json_error_bytes(status, message))
        except OSError:
            pass
        self.drop(conn)

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: Exception) -> None:
        """gunicorn's own answers (malformed requests) as MLflow's JSON error, not HTML."""
        status, message = _gunicorn_error(exc)
        if status == 500:
            self.log.exception("Error handling request")
        else:
            self.log.warning("Invalid request from %s: %s", _peer(addr), message)
        try:
            client.sendall(json_error_bytes(status, message))
        except OSError:
            self.log.debug("Failed to send error message.")


def exit_without_teardown() -> None:
    """End a worker that has finished serving (gunicorn's `worker_exit` hook) at once.

    Python's teardown decrements every object's reference count, which copies each memory page
    the worker shares with the preloaded master: seconds for MLflow's hundreds of MB, during
    which a platform counts toward its SIGKILL deadline. Logs are flushed first.
    """
    error = sys.exc_info()[1]
    code = error.code if isinstance(error, SystemExit) else 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code if isinstance(code, int) else 1)


def json_error_bytes(status: int, message: str) -> bytes:
    code = {
        408: "DEADLINE_EXCEEDED",
        431: "INVALID_PARAMETER_VALUE",
        500: "INTERNAL_ERROR",
        501: "NOT_IMPLEMENTED",
    }.get(status, "BAD_REQUEST")
    body = error_body(code, message)
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _gunicorn_error(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return 431, f"Request headers too large: {exc}"
    if isinstance(exc, http_errors.UnsupportedTransferCoding):
        return 501, str(exc)
    if isinstance(exc, http_errors.ExpectationFailed):
        return 417, str(exc)
    if isinstance(exc, (http_errors.ParseException, OSError)):
        return 400, f"Malformed request: {exc}"[:500]
    return 500, "Internal error; the server log has details."


def _peer(addr: Any) -> str:
    return str(addr[0]) if isinstance(addr, tuple) and addr else "unix socket"
