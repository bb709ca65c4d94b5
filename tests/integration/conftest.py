"""Fixtures that run the real service (tests/service_process.py does the running)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_process import Server, free_port, service_env, start_gunicorn, stop, wait_ready


@pytest.fixture
def run_server(tmp_path: Path) -> Iterator:
    """Start a server with extra settings; every server started is stopped at teardown."""
    started: list[subprocess.Popen] = []

    def run(wait: bool = True, **overrides: str) -> Server:
        port = free_port()
        log_path = tmp_path / f"gunicorn-{port}.log"
        process = start_gunicorn(service_env(tmp_path, port, **overrides), log_path)
        started.append(process)
        server = Server(f"http://127.0.0.1:{port}", port, process, log_path, tmp_path / "data")
        if wait:
            try:
                wait_ready(server.url, process)
            except RuntimeError as error:
                raise AssertionError(f"{error}\n{server.log()}") from None
        return server

    yield run
    for process in started:
        stop(process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One embedded-default server shared by a test module."""
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    log_path = tmp / "gunicorn.log"
    process = start_gunicorn(service_env(tmp, port), log_path)
    srv = Server(f"http://127.0.0.1:{port}", port, process, log_path, tmp / "data")
    try:
        wait_ready(srv.url, process, "/readyz")
    except RuntimeError as error:
        stop(process)
        raise AssertionError(f"{error}\n{srv.log()}") from None
    yield srv
    stop(process)
