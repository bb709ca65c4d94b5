"""`mlflow-app deploy`: the service's files to the workspace, deployed as the app, then proven.

The deployable tree is checked first (requirements.txt in step with pyproject.toml, no file
over the platform's 10 MB); the files go to the source path `setup` recorded, the app is
deployed with a progress line per state, and the deployed app must answer `/readyz`.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import tomllib

MAX_FILE_BYTES = 10 * 1024 * 1024  # Databricks Apps refuses larger files
DEPLOYED = ("app.yaml", "wsgi.py", "gunicorn.conf.py", "requirements.txt", "pyproject.toml")


class DeployFailed(Exception):
    """Deployment stopped; the message says why and what to do."""


def deployable_files(root: Path) -> list[Path]:
    """The files the app needs, relative to the repository root."""
    files = [Path(name) for name in DEPLOYED]
    files += sorted(p.relative_to(root) for p in (root / "mlflow_app").glob("*.py"))
    for relative in files:
        path = root / relative
        if not path.is_file():
            raise DeployFailed(f"{relative} is missing from {root}: run from the repository root")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DeployFailed(f"{relative} is over 10 MB, which Databricks Apps refuses")
    _requirements_in_step(root)
    return files


def _requirements_in_step(root: Path) -> None:
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [
        line.strip()
        for line in (root / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if _normalised(declared) != _normalised(listed):
        missing = sorted(_normalised(declared) - _normalised(listed))
        extra = sorted(_normalised(listed) - _normalised(declared))
        raise DeployFailed(
            "requirements.txt (what Databricks Apps installs) differs from pyproject.toml: "
            f"missing {missing or 'nothing'}, extra {extra or 'nothing'}; copy the "
            "[project] dependencies into requirements.txt"
        )


def _normalised(requirements: list[str]) -> set[str]:
    return {re.sub(r"\s+", "", r).lower() for r in requirements}


def upload(client: Any, root: Path, files: list[Path], source_path: str, out: TextIO) -> None:
    from databricks.sdk.service.workspace import ImportFormat

    for folder in sorted({str(Path(source_path) / f.parent) for f in files}):
        client.workspace.mkdirs(folder)
    for relative in files:
        client.workspace.upload(
            f"{source_path}/{relative.as_posix()}",
            io.BytesIO((root / relative).read_bytes()),
            format=ImportFormat.AUTO,
            overwrite=True,
        )
    print(f"uploaded {len(files)} files to {source_path}", file=out)


def deploy_and_wait(
    client: Any,
    app_name: str,
    source_path: str,
    out: TextIO,
    timeout_seconds: float = 900,
    poll_seconds: float = 2,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    from databricks.sdk.service.apps import AppDeployment, AppDeploymentState

    deployment = client.apps.deploy(app_name, AppDeployment(source_code_path=source_path)).response
    deadline = time.monotonic() + timeout_seconds
    last = ""
    while True:
        status = deployment.status
        state = status.state if status else None
        line = f"deploying {app_name}: {state.value if state else '?'} {status.message or ''}"
        if line != last:
            print(line.rstrip(), file=out)
            last = line
        if state == AppDeploymentState.SUCCEEDED:
            return
        if state in (AppDeploymentState.FAILED, AppDeploymentState.CANCELLED):
            raise DeployFailed(
                f"deployment {deployment.deployment_id} {state.value}: {status.message}; "
                f"see the app's logs: databricks apps logs {app_name}"
            )
        if time.monotonic() > deadline:
            raise DeployFailed(
                f"deployment {deployment.deployment_id} still {state} after "
                f"{timeout_seconds:g} s; check: databricks apps get {app_name}"
            )
        sleep(poll_seconds)
        deployment = client.apps.get_deployment(app_name, deployment.deployment_id)


def readiness(client: Any, app_url: str) -> tuple[int, dict]:
    """GET the deployed app's /readyz as the caller (the Apps proxy wants a bearer token)."""
    import requests

    headers = client.config.authenticate()
    response = requests.get(f"{app_url.rstrip('/')}/readyz", headers=headers, timeout=60)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"checks": [], "error": response.text[:200]}


def report_readiness(status: int, report: dict, out: TextIO) -> bool:
    for check in report.get("checks", []):
        fix = f"  fix: {check['fix']}" if check.get("fix") and check["status"] != "ok" else ""
        print(f"  {check['name']:16} {check['status']:8} {check.get('reason', '')}{fix}", file=out)
    if status != 200 and not report.get("checks"):
        print(f"  /readyz answered {status}: {report.get('error', '')}", file=out)
    return status == 200
