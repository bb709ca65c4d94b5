"""Fixtures for contract tests: the stand-in workspace as a subprocess on a free port."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.contract.standin_handle import (
    CLIENT_ID,
    CLIENT_SECRET,
    PAT,
    USER_TOKENS,
    VOLUME,
    StandIn,
)
from tests.integration.conftest import run_server  # noqa: F401 (a fixture)
from tests.service_process import REPO, free_port, stop


@pytest.fixture
def standin(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StandIn]:
    """The stand-in workspace; `@pytest.mark.token_ttl(seconds)` shortens token lifetimes."""
    marker = request.node.get_closest_marker("token_ttl")
    token_ttl = str(marker.args[0]) if marker else "3600"
    port, tls_port, proxy_port = free_port(), free_port(), free_port()
    log = (tmp_path / "standin.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.contract.standin",
            "--port",
            str(port),
            "--tls-port",
            str(tls_port),
            "--proxy-port",
            str(proxy_port),
            "--state-dir",
            str(tmp_path / "workspace"),
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--pat",
            PAT,
            "--volume",
            VOLUME,
            *[
                arg
                for token, user in USER_TOKENS.items()
                for arg in ("--user-token", f"{token}={user}")
            ],
            "--token-ttl",
            token_ttl,
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    workspace = StandIn(
        f"http://127.0.0.1:{port}",
        process,
        tmp_path / "workspace",
        f"https://127.0.0.1:{tls_port}",
        proxy_port,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            workspace.stats()
            break
        except (requests.ConnectionError, requests.Timeout):
            # Its socket accepts before its worker has imported MLflow; under load, a first
            # request can wait longer than the request's own timeout.
            assert process.poll() is None, (tmp_path / "standin.log").read_text()
            time.sleep(0.2)
    else:
        stop(process)
        raise AssertionError(
            "the stand-in workspace did not answer within 60 s\n"
            + (tmp_path / "standin.log").read_text()
        )
    yield workspace
    stop(process)
