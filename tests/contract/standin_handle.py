"""The stand-in workspace as tests see it: its credentials, and a handle on the running
stand-in (direct API calls, its control plane, where it keeps files)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests

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
