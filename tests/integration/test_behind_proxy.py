"""The service behind a real reverse proxy, reached by a hostname: what users really do.

nginx (TLS with a test CA, or HTTP under a path prefix) rewrites `Host` and forwards
`X-Forwarded-*`; headless Chromium maps `mlflow.test` to 127.0.0.1 and drives the UI's own
writes, which send `Origin`. A page on another origin tries the same writes and changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from tests.integration.browser import CHROMIUM, CHROMIUM_FLAGS, skip_without_chromium
from tests.integration.nginx import HOSTNAME, NGINX, Proxy, map_hostname, start_nginx
from tests.service_process import Server, free_port, service_env, start_gunicorn, stop
from tests.service_process import wait_ready as wait_direct

pytestmark = [
    pytest.mark.skipif(
        NGINX is None, reason="Debian nginx is not installed (.ci/run: apt-get install nginx)"
    ),
]


@dataclass
class Deployment:
    server: Server
    proxy: Proxy
    prefix: str

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def verify(self) -> str | bool:
        return str(self.proxy.ca_path) if self.proxy.ca_path else True

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        with map_hostname():
            return requests.request(
                method,
                f"{self.url}/api/2.0/mlflow/{path}",
                verify=self.verify,
                timeout=30,
                **kwargs,
            )


@pytest.fixture(scope="module", params=["tls", "prefix"])
def deployment(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The service behind nginx: TLS at the root, or plain HTTP under /mlflow."""
    tmp = tmp_path_factory.mktemp(request.param)
    prefix = "/mlflow" if request.param == "prefix" else ""
    port = free_port()
    env = service_env(tmp, port, MLFLOW_SERVER_ALLOWED_HOSTS=HOSTNAME, MLFLOW_STATIC_PREFIX=prefix)
    process = start_gunicorn(env, tmp / "gunicorn.log")
    server = Server(f"http://127.0.0.1:{port}", port, process, tmp / "gunicorn.log", tmp / "data")
    proxy = None
    try:
        wait_direct(server.url, process, f"{prefix}/healthz")
        proxy = start_nginx(tmp / "nginx", port, tls=request.param == "tls", prefix=prefix)
        yield Deployment(server, proxy, prefix)
    finally:
        if proxy is not None:
            proxy.stop()
        stop(process)


def test_same_origin_write_through_the_proxy_passes(deployment: Deployment) -> None:
    origin = deployment.url.removesuffix(deployment.prefix)
    response = deployment.api(
        "POST", "experiments/create", json={"name": "same-origin"}, headers={"Origin": origin}
    )
    assert response.status_code == 200, response.text
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cross_origin_write_is_refused_in_json_and_changes_nothing(
    deployment: Deployment,
) -> None:
    other = f"https://other-app.{HOSTNAME}"
    response = deployment.api(
        "POST", "experiments/create", json={"name": "cross-origin"}, headers={"Origin": other}
    )
    assert response.status_code == 403
    assert response.json()["error_code"] == "PERMISSION_DENIED"
    found = deployment.api(
        "GET", "experiments/get-by-name", params={"experiment_name": "cross-origin"}
    )
    assert found.status_code == 404


def test_a_host_nobody_configured_is_refused_with_the_setting_logged(
    deployment: Deployment,
) -> None:
    url = f"{deployment.server.url}{deployment.prefix}/api/2.0/mlflow/experiments/search"
    response = requests.get(url, headers={"Host": "rebound.attacker.test"}, timeout=10)
    assert response.status_code == 403
    assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert "refused Host 'rebound.attacker.test'" in deployment.server.log()
    assert "MLFLOW_SERVER_ALLOWED_HOSTS" in deployment.server.log()


def test_readiness_under_api_through_the_proxy(deployment: Deployment) -> None:
    with map_hostname():
        response = requests.get(
            f"{deployment.url}/api/readyz", verify=deployment.verify, timeout=30
        )
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_the_mlflow_client_through_the_proxy(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs, metric history, a 100 MB artifact by sha256, a model registered and loaded by alias."""
    if deployment.proxy.ca_path:
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(deployment.proxy.ca_path))
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        for _ in range(100):
            out.write(os.urandom(1024 * 1024))
    with map_hostname():
        mlflow.set_tracking_uri(deployment.url)
        mlflow.set_registry_uri(deployment.url)
        client = MlflowClient(deployment.url, deployment.url)
        experiment_id = client.create_experiment(f"through-proxy-{deployment.prefix or 'root'}")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            for step in range(20):
                mlflow.log_metric("loss", 1 / (step + 1), step=step)
            mlflow.log_artifact(str(big))
            model = LogisticRegression().fit(np.array([[0.0], [1.0]]), np.array([0, 1]))
            info = mlflow.sklearn.log_model(model, name="model", input_example=np.array([[0.5]]))
        name = f"proxy-model{deployment.prefix.replace('/', '-')}"
        version = mlflow.register_model(info.model_uri, name)
        client.set_registered_model_alias(name, "champion", version.version)

        history = client.get_metric_history(run.info.run_id, "loss")
        downloaded = client.download_artifacts(run.info.run_id, "big.bin", str(tmp_path / "dl"))
        loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        prediction = loaded.predict(np.array([[0.9]]))
    assert [m.step for m in history] == list(range(20))
    assert _sha256(Path(downloaded)) == _sha256(big)
    assert list(prediction) == [1]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- the browser, through the proxy ---------------------------------------------------------

CHROMIUM_ARGS = [
    *CHROMIUM_FLAGS,
    f"--host-resolver-rules=MAP {HOSTNAME} 127.0.0.1, MAP *.{HOSTNAME} 127.0.0.1",
]
# 404s the UI asks for on purpose: the signed-in user (without MLflow's auth app stock answers
# 404 too), and whether a new experiment's name is free before creating it.
_EXPECTED_404 = re.compile(
    r"/ajax-api/2\.0/mlflow/(users/current$|experiments/get-by-name\?experiment_name=ui-made-)"
)


@pytest.fixture
def browser_page(deployment: Deployment, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # The test CA is not in Chromium's store; the origin is still https://mlflow.test:<port>.
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.api_answers = []
        page.on("response", lambda r: _record_api_answer(page, r))
        page.shots = tmp_path
        try:
            yield page
        finally:
            browser.close()


def _record_api_answer(page, response) -> None:
    if "/api/" in response.url or "/ajax-api/" in response.url:
        page.api_answers.append((response.request.method, response.url, response.status))


def _failed_api_answers(page) -> list[tuple[str, str, int]]:
    return [
        (method, url, status)
        for method, url, status in page.api_answers
        if status >= 400 and not (status == 404 and _EXPECTED_404.search(url))
    ]


def _wait_for_post(page, path_part: str):
    return page.expect_response(
        lambda r: path_part in r.url and r.request.method == "POST", timeout=30_000
    )


@pytest.mark.browser
@skip_without_chromium
def test_a_user_works_in_the_ui_through_the_proxy(browser_page, deployment: Deployment) -> None:
    page = browser_page
    name = f"ui-made-{deployment.prefix.strip('/') or 'root'}"

    # Create an experiment from the experiments list.
    page.goto(f"{deployment.url}/#/experiments")
    page.get_by_test_id("create-experiment-button").click()
    page.locator("#experimentName").fill(name)
    with _wait_for_post(page, "/experiments/create") as created:
        page.get_by_role("dialog").get_by_role("button", name="Create").click()
    assert created.value.status == 200, created.value.text()
    page.screenshot(path=str(page.shots / "1-experiment-created.png"))
    experiment_id = created.value.json()["experiment_id"]
    # The UI moves on to the new experiment by itself and guesses its kind from what it holds
    # (nothing yet: "GenAI", which sends /runs to a traces overview). Let it finish, then leave
    # the page, so the kind set below is the last word and the runs table loads afresh.
    page.wait_for_url(
        re.compile(rf".*#/experiments/{experiment_id}/(overview|runs|traces)\b.*"), timeout=30_000
    )
    page.goto("about:blank")

    run = deployment.api(
        "POST", "runs/create", json={"experiment_id": experiment_id, "run_name": "ui-run"}
    ).json()["run"]["info"]
    run_id = run["run_id"]
    # Say what the experiment is, as a user picking its type does, and ask for the ML view.
    deployment.api(
        "POST",
        "experiments/set-experiment-tag",
        json={
            "experiment_id": experiment_id,
            "key": "mlflow.experimentKind",
            "value": "custom_model_development",
        },
    ).raise_for_status()
    runs_table = (
        f"{deployment.url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    )

    # Open the experiment's runs table (a POST to runs/search).
    with _wait_for_post(page, "/runs/search") as searched:
        page.goto(runs_table)
    assert searched.value.status == 200
    page.get_by_text("ui-run").first.wait_for(timeout=30_000)
    page.screenshot(path=str(page.shots / "2-runs-table.png"))

    # Add a tag to the run from its page.
    page.goto(f"{deployment.url}/#/experiments/{experiment_id}/runs/{run_id}")
    page.get_by_role("button", name="Add tags").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").fill("team")
    page.keyboard.press("Enter")
    dialog.get_by_placeholder("Type a value").fill("platform")
    dialog.get_by_role("button", name="Add tag").click()
    with _wait_for_post(page, "/runs/set-tag") as tagged:
        dialog.get_by_role("button", name="Save tags").click()
    assert tagged.value.status == 200
    page.screenshot(path=str(page.shots / "3-tagged.png"))
    tags = deployment.api("GET", "runs/get", params={"run_id": run_id}).json()["run"]["data"]
    assert {"key": "team", "value": "platform"} in tags["tags"]

    # Delete the run from its page.
    page.get_by_test_id("overflow-menu-trigger").first.click()
    page.get_by_test_id("overflow-delete-button").click()
    with _wait_for_post(page, "/runs/delete") as deleted:
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    assert deleted.value.status == 200
    page.screenshot(path=str(page.shots / "4-deleted.png"))
    state = deployment.api("GET", "runs/get", params={"run_id": run_id}).json()
    assert state["run"]["info"]["lifecycle_stage"] == "deleted"

    # Restore it from the runs table's deleted runs.
    page.goto(runs_table)
    page.get_by_test_id("lifecycle-filter").click()
    page.get_by_role("option", name="Deleted").click()
    page.get_by_text("ui-run").first.wait_for(timeout=30_000)
    page.get_by_role("checkbox").nth(1).click(force=True)  # the run's row
    page.get_by_test_id("runs-restore-button").click()
    with _wait_for_post(page, "/runs/restore") as restored:
        page.get_by_role("dialog").get_by_role("button", name="Restore").click()
    assert restored.value.status == 200
    page.screenshot(path=str(page.shots / "5-restored.png"))
    state = deployment.api("GET", "runs/get", params={"run_id": run_id}).json()
    assert state["run"]["info"]["lifecycle_stage"] == "active"

    assert _failed_api_answers(page) == []
    assert any(method == "POST" for method, _, _ in page.api_answers)


@pytest.mark.browser
@skip_without_chromium
def test_a_page_on_another_origin_cannot_write_with_the_users_session(
    browser_page, deployment: Deployment
) -> None:
    """A page served from another origin POSTs to the service with the browser's credentials."""
    page = browser_page
    page.goto(f"{deployment.url}/#/experiments")  # the user's session with the service
    # Any document on another origin will do; this one is the proxy's answer for that name.
    page.goto(deployment.url.replace(f"://{HOSTNAME}", f"://attacker.{HOSTNAME}") + "/")
    target = f"{deployment.url}/ajax-api/2.0/mlflow/experiments/create"
    status = page.evaluate(
        """async (target) => {
            const response = await fetch(target, {
                method: "POST", credentials: "include", mode: "no-cors",
                headers: {"Content-Type": "text/plain"},
                body: JSON.stringify({name: "planted-by-another-origin"}),
            });
            return response.type;
        }""",
        target,
    )
    assert status == "opaque"  # the browser sent it; the answer is hidden from the page
    found = deployment.api(
        "GET", "experiments/get-by-name", params={"experiment_name": "planted-by-another-origin"}
    )
    assert found.status_code == 404
    assert "refused a POST from origin" in deployment.server.log()
