"""The service on the stand-in Databricks Apps platform: `setup` then `deploy` as a user would,
the app run from what was uploaded, and reached only through the Apps proxy."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.contract.standin_apps import APPS_DOMAIN, app_host
from tests.contract.standin_handle import CLIENT_ID, CLIENT_SECRET, PAT, StandIn
from tests.integration.browser import CHROMIUM, CHROMIUM_FLAGS, skip_without_chromium
from tests.service_process import REPO

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
    assert re.search(r"^smoke test +ok +logged and read back", result.stdout, re.MULTILINE)
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
    assert re.search(
        rf"^grants on schema +FAILED .* GRANT CREATE MODEL ON SCHEMA ml.mlflow TO `{sp}`$",
        doctor.stdout,
        re.MULTILINE,
    ), doctor.stdout


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
    assert re.search(
        r"^compute +FAILED +STOPPED +mlflow-app deploy \(starts it\)", doctor.stdout, re.MULTILINE
    ), doctor.stdout
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


# 404s the UI asks for on purpose: the signed-in user (no MLflow auth app), and whether a new
# experiment's name is free before creating it.
_EXPECTED_404 = re.compile(
    r"/ajax-api/2\.0/mlflow/(users/current$|experiments/get-by-name\?experiment_name=)"
)


@pytest.mark.browser
@skip_without_chromium
def test_a_user_signs_in_through_the_proxy_and_works_in_the_ui(
    standin: StandIn, deployed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    app_url = f"https://{app_host(APP)}:{standin.proxy_port}"
    # The MLflow client from outside, through the proxy, with an OAuth token that
    # mlflow_app.client_tokens gets (and refreshes) from Databricks unified auth.
    from mlflow_app import client_tokens

    for name, value in {
        "MLFLOW_APP_CLIENT_TOKEN": "databricks",
        "DATABRICKS_HOST": standin.url,
        "DATABRICKS_CLIENT_ID": CLIENT_ID,
        "DATABRICKS_CLIENT_SECRET": CLIENT_SECRET,
        "REQUESTS_CA_BUNDLE": str(standin.ca_path),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    client_tokens._databricks_config.cache_clear()
    notes = tmp_path / "notes.txt"
    notes.write_text("hello from the artifact\n")
    with app_hosts_resolve_here():
        client = MlflowClient(app_url)
        experiment_id = client.create_experiment("/Shared/browsed")
        run_id = client.create_run(experiment_id, run_name="browsed").info.run_id
        client.log_metric(run_id, "loss", 0.25)
        client.log_artifact(run_id, str(notes))
        assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.25]

    answers: list[tuple[str, str, int]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_FLAGS, f"--host-resolver-rules=MAP *.{APPS_DOMAIN} 127.0.0.1"],
        )
        try:
            # The stand-in's CA is not in Chromium's store; the origin is still https.
            context = browser.new_context(ignore_https_errors=True)
            context.on("response", lambda r: answers.append((r.request.method, r.url, r.status)))
            page = context.new_page()
            page.goto(f"{app_url}/")
            assert "/.auth/login" in page.url  # no session: the proxy's sign-in page
            page.fill("input[name=user]", "alice@example.com")
            page.click("button[type=submit]")
            page.wait_for_url(f"{app_url}/")

            page.goto(f"{app_url}/#/experiments")
            page.get_by_test_id("create-experiment-button").click()
            # What a user types: a plain name, which the workspace alone would refuse.
            page.locator("#experimentName").fill("ui-made")
            with page.expect_response(
                lambda r: "/experiments/create" in r.url and r.request.method == "POST",
                timeout=30_000,
            ) as created:
                page.get_by_role("dialog").get_by_role("button", name="Create").click()
            assert created.value.status == 200, created.value.text()

            # The UI moves on to the new experiment; the run is opened in a tab of its own.
            page = context.new_page()
            page.goto(f"{app_url}/#/experiments/{experiment_id}/runs/{run_id}/artifacts")
            page.get_by_text("notes.txt").first.click()
            page.get_by_text("hello from the artifact").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "artifact.png"))
        finally:
            browser.close()
    api = [a for a in answers if "/api/" in a[1] or "/ajax-api/" in a[1]]
    failed = [a for a in api if a[2] >= 400 and not (a[2] == 404 and _EXPECTED_404.search(a[1]))]
    assert failed == []
    assert any("/artifacts/list" in url for _, url, _ in api)
    with app_hosts_resolve_here():
        assert client.get_experiment_by_name("ui-made") is not None
    stored = standin.api(
        "GET",
        "/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": f"/Shared/{APP}/ui-made"},
    )
    assert stored.status_code == 200, stored.text
