"""The service on the stand-in Databricks Apps platform: `setup` then `deploy` as a user would,
the app run from what was uploaded, and reached only through the Apps proxy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.contract.conftest import CLIENT_ID, CLIENT_SECRET, PAT, StandIn
from tests.contract.standin_apps import APPS_DOMAIN, app_host
from tests.integration.conftest import REPO

APP = "mlflow-test"
HOSTMAP = REPO / "tests" / "contract" / "hostmap"


def cli(
    standin: StandIn, state: Path, *args: str, pat: bool = False
) -> subprocess.CompletedProcess:
    """`mlflow-app` as a deployer signed in with OAuth (a service principal), or with a PAT."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_"))}
    env.update(
        DATABRICKS_HOST=standin.url,
        REQUESTS_CA_BUNDLE=str(standin.ca_path),
        PYTHONPATH=str(HOSTMAP),  # resolves *.databricksapps.com to 127.0.0.1
        STANDIN_LOOPBACK_DOMAIN=APPS_DOMAIN,
    )
    if pat:
        env["DATABRICKS_TOKEN"] = PAT
    else:
        env.update(DATABRICKS_CLIENT_ID=CLIENT_ID, DATABRICKS_CLIENT_SECRET=CLIENT_SECRET)
    return subprocess.run(
        [sys.executable, "-m", "mlflow_app.cli", *args, "--state-file", str(state)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def setup(standin: StandIn, state: Path) -> None:
    env_file = state.parent / ".env"
    result = cli(
        standin,
        state,
        "setup",
        "databricks",
        "--catalog",
        "ml",
        "--app",
        APP,
        "--env-file",
        str(env_file),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def app_record(standin: StandIn) -> dict:
    return standin.api("GET", f"/api/2.0/apps/{APP}").json()


def oauth_token(standin: StandIn) -> str:
    return requests.post(
        f"{standin.url}/oidc/v1/token",
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={"grant_type": "client_credentials", "scope": "all-apis"},
        timeout=10,
    ).json()["access_token"]


@contextmanager
def app_hosts_resolve_here() -> Iterator[None]:
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith("." + APPS_DOMAIN):
            host = "127.0.0.1"
        return original(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original


def through_proxy(standin: StandIn, method: str, path: str, **kwargs) -> requests.Response:
    url = f"https://{app_host(APP)}:{standin.proxy_port}{path}"
    with app_hosts_resolve_here():
        return requests.request(
            method, url, verify=str(standin.ca_path), allow_redirects=False, timeout=60, **kwargs
        )


def wait_for_deployment(standin: StandIn, deployment_id: str) -> dict:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = standin.api("GET", f"/api/2.0/apps/{APP}/deployments/{deployment_id}").json()
        if found["status"]["state"] != "IN_PROGRESS":
            return found
        time.sleep(1)
    raise AssertionError(f"deployment {deployment_id} still in progress")


@pytest.fixture
def deployed(standin: StandIn, tmp_path: Path) -> Path:
    """setup, then deploy at once, while the new app's compute is still STARTING."""
    state = tmp_path / "state.json"
    setup(standin, state)
    assert app_record(standin)["compute_status"]["state"] == "STARTING"
    result = cli(standin, state, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "app compute: STARTING" in result.stdout
    assert f"deploying {APP}: SUCCEEDED" in result.stdout
    assert "smoke test       ok" in result.stdout
    assert f"deployed and ready: https://{app_host(APP)}:{standin.proxy_port}" in result.stdout
    return state


def test_setup_then_deploy_at_once_runs_the_uploaded_app(standin: StandIn, deployed: Path):
    # The smoke test's artifact went where app.yaml's valueFrom put the volume.
    volume = standin.volume_file("/Volumes/ml/mlflow/artifacts/mlflow")
    assert [p.name for p in volume.rglob("deploy-check.txt")]
    env_file = deployed.parent / ".env"  # what MLflow clients export
    assert f"MLFLOW_TRACKING_URI=https://{app_host(APP)}" in env_file.read_text()
    doctor = cli(standin, deployed, "doctor", "--app", APP)
    assert doctor.returncode == 0, doctor.stdout
    assert "readyz" in doctor.stdout and "every check passed" in doctor.stdout

    sp = app_record(standin)["service_principal_client_id"]
    standin.api(  # someone revokes what the registry needs
        "PATCH",
        "/api/2.1/unity-catalog/permissions/schema/ml.mlflow",
        json={"changes": [{"principal": sp, "remove": ["CREATE_MODEL"]}]},
    ).raise_for_status()
    doctor = cli(standin, deployed, "doctor", "--app", APP)
    assert doctor.returncode == 1
    assert f"fix: GRANT CREATE MODEL ON SCHEMA ml.mlflow TO `{sp}`" in doctor.stdout


def test_redeploy_while_a_deployment_runs_waits_for_it(standin: StandIn, deployed: Path):
    source = app_record(standin)["active_deployment"]["source_code_path"]
    running = standin.api(
        "POST", f"/api/2.0/apps/{APP}/deployments", json={"source_code_path": source}
    ).json()
    assert running["status"]["state"] == "IN_PROGRESS"
    result = cli(standin, deployed, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"waiting for deployment {running['deployment_id']}, already in progress" in (
        result.stdout
    )
    assert wait_for_deployment(standin, running["deployment_id"])["status"]["state"] == "SUCCEEDED"


def test_a_stopped_app_is_diagnosed_then_started_by_deploy(standin: StandIn, deployed: Path):
    standin.api("POST", f"/api/2.0/apps/{APP}/stop").raise_for_status()
    doctor = cli(standin, deployed, "doctor", "--app", APP)
    assert doctor.returncode == 1
    assert "PROBLEM  compute            STOPPED" in doctor.stdout
    assert "fix: mlflow-app deploy (starts it)" in doctor.stdout
    result = cli(standin, deployed, "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting the app's compute (it was STOPPED)" in result.stdout
    assert "deployed and ready" in result.stdout


def test_a_personal_access_token_is_refused_before_anything_changes(standin, tmp_path):
    state = tmp_path / "state.json"
    setup(standin, state)
    before = len(standin.calls())
    result = cli(standin, state, "deploy", pat=True)
    assert result.returncode == 1
    assert "accepts only OAuth tokens" in result.stderr
    assert f"databricks auth login --host {standin.url}" in result.stderr
    assert not [c for c in standin.calls()[before:] if c["method"] != "GET"]


def test_the_proxy_takes_oauth_bearer_tokens_only_under_api(standin: StandIn, deployed: Path):
    oauth = {"Authorization": f"Bearer {oauth_token(standin)}"}
    ready = through_proxy(standin, "GET", "/api/readyz", headers=oauth)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    pat = through_proxy(standin, "GET", "/api/readyz", headers={"Authorization": f"Bearer {PAT}"})
    assert pat.status_code == 401
    # Outside /api/ a bearer token is no session: the browser's sign-in redirect.
    page = through_proxy(standin, "GET", "/", headers=oauth)
    assert page.status_code == 302 and page.headers["Location"].startswith("/.auth/login")
    anonymous = through_proxy(standin, "GET", "/api/readyz")
    assert anonymous.status_code == 302


def test_a_service_principal_is_identified_without_an_email(standin: StandIn, deployed: Path):
    """databricks-apps access control: the proxy sends no X-Forwarded-Email for a service
    principal; the service identifies it by X-Forwarded-Preferred-Username."""
    source = app_record(standin)["active_deployment"]["source_code_path"]
    app_yaml = (REPO / "app.yaml").read_text() + (
        '  - name: MLFLOW_APP_AUTH\n    value: "databricks-apps"\n'
    )
    standin.api(
        "POST",
        "/api/2.0/workspace/import",
        files={"content": ("app.yaml", app_yaml.encode())},
        data={"path": f"{source}/app.yaml", "overwrite": "true", "format": "AUTO"},
    ).raise_for_status()
    started = standin.api(
        "POST", f"/api/2.0/apps/{APP}/deployments", json={"source_code_path": source}
    ).json()
    assert wait_for_deployment(standin, started["deployment_id"])["status"]["state"] == (
        "SUCCEEDED"
    )
    oauth = {"Authorization": f"Bearer {oauth_token(standin)}"}
    search = through_proxy(
        standin,
        "POST",
        "/api/2.0/mlflow/experiments/search",
        json={"max_results": 5},
        headers=oauth,
    )
    assert search.status_code == 200, search.text
