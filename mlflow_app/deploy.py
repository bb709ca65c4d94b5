"""`mlflow-app deploy`: the service's files to the workspace, deployed as the app, then proven.

The deployable tree is checked first (requirements.txt pinned within pyproject's ranges, no
file over the platform's 10 MB). The app's compute is started if stopped and waited for; a
deployment already in progress is waited for and ours retried, as the Databricks CLI does; all
within one deadline, with a line per state. The app is then proven through the Apps proxy with
an OAuth token: readiness under /api/ (no redirect followed), then a smoke test with the MLflow
client that logs a run with a metric and an artifact and reads them back.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mlflow_app.findings import Finding, render_table
from mlflow_app.pinned_requirements import problems

MAX_FILE_BYTES = 10 * 1024 * 1024  # Databricks Apps refuses larger files
DEPLOYED = ("app.yaml", "wsgi.py", "gunicorn.conf.py", "requirements.txt", "pyproject.toml")
READY_PATH = "/api/readyz"  # the Apps proxy takes bearer tokens only under /api/
# Compute states from which only a start brings the app back (the Databricks CLI's rule).
_STOPPED = ("STOPPED", "ERROR")
# What the platform says when a deployment cannot start yet; we wait and retry.
_BUSY = ("active deployment in progress", "deployment in progress")


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
    if found := problems(root):
        raise DeployFailed(
            f"requirements.txt (what Databricks Apps installs): {'; '.join(found)}; "
            "regenerate it: mlflow-app requirements --write"
        )
    return files


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


@dataclass
class Waiter:
    """One deadline for the whole deployment, and a progress line whenever a state changes."""

    out: TextIO
    deadline: float
    poll_seconds: float = 2
    sleep: Callable[[float], None] = time.sleep
    last: str = ""

    def say(self, line: str) -> None:
        if line != self.last:
            print(line.rstrip(), file=self.out)
            self.last = line

    def pause(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise DeployFailed(
                f"gave up waiting for {what}; rerun mlflow-app deploy, or check: "
                "databricks apps get <app>"
            )
        self.sleep(self.poll_seconds)


def deploy_and_wait(
    client: Any,
    app_name: str,
    source_path: str,
    out: TextIO,
    timeout_seconds: float = 1200,
    poll_seconds: float = 2,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    waiter = Waiter(out, time.monotonic() + timeout_seconds, poll_seconds, sleep)
    deployment = _start_deployment(client, app_name, source_path, waiter)
    _follow(client, app_name, deployment, waiter)


def wait_for_compute(client: Any, app_name: str, waiter: Waiter) -> None:
    """Start stopped compute and wait until it is ACTIVE."""
    while True:
        app = client.apps.get(app_name)
        state = _value(app.compute_status.state if app.compute_status else None)
        message = app.compute_status.message if app.compute_status else ""
        waiter.say(f"app compute: {state} {message or ''}")
        if state == "ACTIVE":
            return
        if state in _STOPPED:
            waiter.say(f"starting the app's compute (it was {state})")
            client.apps.start(app_name)
        waiter.pause(f"{app_name}'s compute to become ACTIVE (it is {state})")


def _start_deployment(client: Any, app_name: str, source_path: str, waiter: Waiter) -> Any:
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.service.apps import AppDeployment

    from mlflow_app.error_text import error_line

    while True:
        wait_for_compute(client, app_name, waiter)
        _wait_for_deployments_in_progress(client, app_name, waiter)
        try:
            return client.apps.deploy(
                app_name, AppDeployment(source_code_path=source_path)
            ).response
        except DatabricksError as error:
            text = str(error).lower()
            if not any(busy in text for busy in _BUSY) and "compute" not in text:
                raise
            waiter.say(f"the platform is not ready for a deployment yet: {error_line(error)}")
            waiter.pause("the app to accept a deployment")


def _wait_for_deployments_in_progress(client: Any, app_name: str, waiter: Waiter) -> None:
    app = client.apps.get(app_name)
    for current in (app.pending_deployment, app.active_deployment):
        if current is not None and _value(_state(current)) == "IN_PROGRESS":
            waiter.say(f"waiting for deployment {current.deployment_id}, already in progress")
            _follow(client, app_name, current, waiter, ours=False)


def _follow(client: Any, app_name: str, deployment: Any, waiter: Waiter, ours: bool = True) -> None:
    while True:
        state = _value(_state(deployment))
        message = deployment.status.message if deployment.status else ""
        if ours:
            waiter.say(f"deploying {app_name}: {state} {message or ''}")
        if state == "SUCCEEDED" or (state in ("FAILED", "CANCELLED") and not ours):
            return
        if state in ("FAILED", "CANCELLED"):
            raise DeployFailed(
                f"deployment {deployment.deployment_id} {state}: {message}; "
                f"see the app's logs: databricks apps logs {app_name}"
            )
        waiter.pause(f"deployment {deployment.deployment_id} (it is {state})")
        deployment = client.apps.get_deployment(app_name, deployment.deployment_id)


def _state(deployment: Any) -> Any:
    return deployment.status.state if deployment.status else None


def _value(state: Any) -> str:
    return getattr(state, "value", state) or "?"


# --- proving the deployed app through the Apps proxy ---------------------------------------------
def oauth_token(client: Any) -> str:
    """The caller's OAuth access token; the Apps proxy refuses personal access tokens."""
    config = client.config
    if config.auth_type in ("pat", "basic"):
        raise DeployFailed(
            "the Databricks Apps proxy accepts only OAuth tokens, and these credentials are a "
            f"{'personal access token' if config.auth_type == 'pat' else 'password'}; sign in "
            f"with OAuth: databricks auth login --host {config.host} --profile <name>, then "
            "pass --profile <name> (or set DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET)"
        )
    header = config.authenticate().get("Authorization", "")
    if not header.startswith("Bearer "):
        raise DeployFailed(f"{config.auth_type} credentials gave no bearer token for the app")
    return header[len("Bearer ") :]


def readiness(app_url: str, token: str) -> tuple[int, dict]:
    """GET the deployed app's readiness under /api/ as the caller; a redirect (the proxy's
    sign-in page) or an answer that is not JSON is a failure, never a pass."""
    import requests

    response = requests.get(
        f"{app_url.rstrip('/')}{READY_PATH}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
        allow_redirects=False,
    )
    if response.is_redirect:
        where = response.headers.get("Location", "?")
        return response.status_code, {
            "checks": [],
            "error": f"redirected to {where}: the Apps proxy did not accept the token",
        }
    try:
        report = response.json()
    except ValueError:
        report = None
    if not isinstance(report, dict):
        kind = response.headers.get("Content-Type", "no content type")
        return response.status_code, {"checks": [], "error": f"not JSON ({kind})"}
    return response.status_code, report


def report_readiness(status: int, report: dict, out: TextIO) -> bool:
    """Print the app's readiness checks as a findings table; whether the app is ready."""
    findings = [
        Finding(
            c["name"],
            c["status"],
            c.get("reason", ""),
            c.get("fix", "") if c["status"] != "ok" else "",
        )
        for c in report.get("checks", [])
    ]
    ready = status == 200 and "error" not in report
    if not ready and not findings:
        findings = [Finding(READY_PATH, "failed", f"answered {status}: {report.get('error', '')}")]
    print(render_table(findings), end="", file=out)
    return ready


def smoke_test(app_url: str, token: str, workdir: Path, out: TextIO) -> None:
    """Log a run with a metric and an artifact through the app, read them back, clean up."""
    import os
    import uuid

    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    client = MlflowClient(tracking_uri=app_url.rstrip("/"))
    name = f"/Shared/mlflow-app-deploy-check-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    try:
        run = client.create_run(experiment_id, run_name="deploy-check")
        client.log_metric(run.info.run_id, "deploy_check", 1.0)
        sent = workdir / "sent" / "deploy-check.txt"
        sent.parent.mkdir(parents=True, exist_ok=True)
        sent.write_text(f"mlflow-app deploy check {uuid.uuid4()}\n")
        client.log_artifact(run.info.run_id, str(sent))
        client.set_terminated(run.info.run_id)
        (workdir / "back").mkdir(exist_ok=True)
        back = Path(client.download_artifacts(run.info.run_id, sent.name, str(workdir / "back")))
        metric = client.get_metric_history(run.info.run_id, "deploy_check")
        if back.read_text() != sent.read_text() or [m.value for m in metric] != [1.0]:
            raise DeployFailed(
                f"the app gave back other data than was logged in run {run.info.run_id}"
            )
    finally:
        client.delete_experiment(experiment_id)
    smoke = Finding("smoke test", "ok", "logged and read back a run, a metric and an artifact")
    print(render_table([smoke]), end="", file=out)
