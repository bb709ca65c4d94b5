"""Slow, idle and malformed clients, a database that does not answer, and shutdown.

Functional assertions only (answered or not, what status, what was kept); how fast is measured
in benchmarks/hostile_traffic.py beside stock `mlflow server`.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.silent_database import silent_database
from tests.service_process import Server

API = "/api/2.0/mlflow"
# Generous: before the buffered worker, these requests were not answered at all.
PATIENCE = 30


def open_connections(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if first_bytes:
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


@pytest.fixture
def hostile_connections(server: Server) -> Iterator[None]:
    """100 clients sending headers slowly, 50 sending a body slowly, 200 saying nothing."""
    slow_head = b"GET /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: localhost\r\nX-A: "
    slow_body = (
        b"POST /api/2.0/mlflow/experiments/create HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
    )
    held = open_connections(server.port, 100, slow_head)
    held += open_connections(server.port, 50, slow_body)
    held += open_connections(server.port, 200, b"")
    try:
        yield
    finally:
        for sock in held:
            sock.close()


def test_slow_and_idle_clients_hold_no_thread(server: Server, hostile_connections) -> None:
    run_id = requests.post(
        f"{server.url}{API}/runs/create", json={"experiment_id": "0"}, timeout=PATIENCE
    ).json()["run"]["info"]["run_id"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        health = list(
            pool.map(lambda _: requests.get(f"{server.url}/healthz", timeout=PATIENCE), range(16))
        )
        runs = list(
            pool.map(
                lambda _: requests.get(
                    f"{server.url}{API}/runs/get", params={"run_id": run_id}, timeout=PATIENCE
                ),
                range(16),
            )
        )
    assert [r.status_code for r in health + runs] == [200] * 32


def test_a_stalled_request_is_answered_in_json_when_its_time_is_up(run_server) -> None:
    server = run_server(MLFLOW_APP_CLIENT_TIMEOUT_SECONDS="2")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    sock.sendall(b"GET /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: loc")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error_code"] == "DEADLINE_EXCEEDED"


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_long_request_line_is_served(server: Server) -> None:
    """MLflow's own maximum: 100 run ids in get-history-bulk-interval (~4.2 KB)."""
    run_ids = [f"{i:032x}" for i in range(100)]
    response = requests.get(
        f"{server.url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
        params={"run_ids": run_ids, "metric_key": "loss", "max_results": 10},
        timeout=PATIENCE,
    )
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n", 431),
        (b"G\x01T /api/ HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
        (b"GET /api/2.0/mlflow/x HTTP/9.9\r\nHost: localhost\r\n\r\n", 400),
    ],
)
def test_requests_gunicorn_refuses_get_a_json_error(server: Server, raw: bytes, status: int):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    sock.sendall(raw)
    head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    sock.close()
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    assert b"Content-Type: application/json" in head
    assert "error_code" in json.loads(body)


def test_a_chunked_upload_and_a_spooled_body_arrive_whole(server: Server) -> None:
    payload = os.urandom(3 * 1024 * 1024)  # beyond the in-memory limit: spooled to disk
    path = "/api/2.0/mlflow-artifacts/artifacts/hostile/chunked.bin"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 100_000):
            yield payload[start : start + 100_000]

    assert requests.put(server.url + path, data=chunks(), timeout=PATIENCE).status_code == 200
    assert requests.get(server.url + path, timeout=PATIENCE).content == payload


# --- a database that does not answer ------------------------------------------------------


@pytest.fixture
def silent_database_port() -> Iterator[int]:
    with silent_database() as port:
        yield port


def test_an_unreachable_database_is_a_quick_503_with_retry_after(
    run_server, silent_database_port: int
) -> None:
    server = run_server(
        MLFLOW_BACKEND_STORE_URI=f"postgresql://mlflow:db-Secr3t@127.0.0.1:{silent_database_port}/db",
        MLFLOW_APP_START_DEGRADED="true",
    )

    def search(_: int) -> requests.Response:
        return requests.get(
            f"{server.url}{API}/experiments/search", params={"max_results": 1}, timeout=PATIENCE
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(search, range(32)))
        health = requests.get(f"{server.url}/healthz", timeout=PATIENCE)
    assert health.status_code == 200
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert int(answer.headers["Retry-After"]) > 0
        assert "db-Secr3t" not in answer.text
    assert "db-Secr3t" not in server.log()


# --- shutdown ------------------------------------------------------------------------------


def test_shutdown_closes_idle_connections_and_keeps_every_acknowledged_write(
    run_server,
) -> None:
    server = run_server(MLFLOW_APP_GRACEFUL_TIMEOUT="10")
    run_id = requests.post(
        f"{server.url}{API}/runs/create", json={"experiment_id": "0"}, timeout=PATIENCE
    ).json()["run"]["info"]["run_id"]
    idle = requests.Session()
    assert idle.get(f"{server.url}/healthz", timeout=PATIENCE).status_code == 200
    idle_socket = socket.create_connection(("127.0.0.1", server.port))
    acknowledged: list[int] = []
    stop_writing = threading.Event()

    def write(writer: int) -> None:
        session = requests.Session()
        step = writer * 1_000_000
        while not stop_writing.is_set():
            metric = {"key": "m", "value": 1.0, "timestamp": 0, "step": step}
            try:
                response = session.post(
                    f"{server.url}{API}/runs/log-batch",
                    json={"run_id": run_id, "metrics": [metric]},
                    timeout=PATIENCE,
                )
            except requests.ConnectionError:
                return  # refused or closed: not acknowledged, so not counted
            if response.status_code == 200:
                acknowledged.append(step)
            step += 1

    writers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in writers:
        thread.start()
    time.sleep(2)
    os.kill(server.process.pid, signal.SIGTERM)
    idle_socket.settimeout(PATIENCE)
    assert idle_socket.recv(1) == b""  # closed by the server, so a proxy retries elsewhere
    server.process.wait(timeout=PATIENCE)
    stop_writing.set()
    for thread in writers:
        thread.join(PATIENCE)
    assert server.process.returncode == 0
    assert acknowledged

    restarted = run_server()  # the same data directory
    steps = requests.get(
        f"{restarted.url}{API}/metrics/get-history",
        params={"run_id": run_id, "metric_key": "m", "max_results": 100_000},
        timeout=PATIENCE,
    ).json()["metrics"]
    assert set(acknowledged) <= {m["step"] for m in steps}
