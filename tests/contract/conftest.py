"""Fixtures for contract tests: the stand-in workspace as a subprocess on a free port."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import run_server  # noqa: F401 (a fixture)
from tests.service_process import REPO, free_port, stop

CLIENT_ID = "6f1d6c1e-sp-mlflow-app"
CLIENT_SECRET = "dose-standin-client-secret-0123456789"
PAT = "dapi-standin-personal-access-token"
VOLUME = "/Volumes/main/mlflow/artifacts"
# Workspace users' tokens, as the Databricks Apps proxy forwards them (X-Forwarded-Access-Token).
USER_TOKENS = {"dapi-user-alice": "alice@example.com", "dapi-user-bob": "bob@example.com"}


@dataclass
class StandIn:
    url: str
    process: subprocess.Popen
    state_dir: Path
    tls_url: str  # the same workspace over HTTPS, as apps reach it
    proxy_port: int  # the Databricks Apps proxy: https://<app>-<workspace id>.<domain>:<port>

    @property
    def ca_path(self) -> Path:
        """The CA that signed the workspace's and the proxy's certificates."""
        return self.state_dir / "ca.pem"

    def volume_file(self, path: str) -> Path:
        """Where the workspace keeps a /Volumes/... file."""
        return self.state_dir / "volumes" / path.lstrip("/")

    def model_files(self, name: str, version: str) -> list[Path]:
        """The files uploaded for a UC model version."""
        root = self.state_dir / "models" / "Models" / name.replace(".", "/") / version
        return [p for p in root.rglob("*") if p.is_file()]

    def control(self, action: str, **body: object) -> dict:
        response = requests.post(f"{self.url}/_standin/{action}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def calls(self) -> list[dict]:
        """The latest API calls the workspace answered: principal, method, path."""
        return requests.get(f"{self.url}/_standin/calls", timeout=10).json()["calls"]

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_standin/stats", timeout=10).json()

    def api(self, method: str, path: str, **kwargs: object) -> requests.Response:
        """Call the workspace directly, as a user with a personal access token."""
        return requests.request(
            method,
            self.url + path,
            timeout=30,
            headers={"Authorization": f"Bearer {PAT}"},
            **kwargs,
        )

    def service_settings(self, **overrides: str) -> dict[str, str]:
        """What Databricks Apps would inject for our app, pointing at this workspace."""
        return {
            "DATABRICKS_HOST": self.url,
            "DATABRICKS_CLIENT_ID": CLIENT_ID,
            "DATABRICKS_CLIENT_SECRET": CLIENT_SECRET,
            "DATABRICKS_APP_NAME": "mlflow-test",
            "MLFLOW_APP_READINESS_CACHE_SECONDS": "0",
            **overrides,
        }


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
        except requests.ConnectionError:
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
