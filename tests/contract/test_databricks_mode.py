"""mlflow-app in Databricks mode (workspace tracking, UC registry) against the stand-in."""

from __future__ import annotations

import re
import time

import pytest
import requests
from mlflow import MlflowClient

from tests.contract.standin_handle import CLIENT_ID, PAT, StandIn

API = "/api/2.0/mlflow"


def test_tracking_goes_to_the_workspace_as_the_service_principal(run_server, standin: StandIn):
    server = run_server(**standin.service_settings())
    client = MlflowClient(server.url)
    experiment_id = client.create_experiment("/Shared/mlflow-app-contract")
    run_id = client.create_run(experiment_id, run_name="contract-run").info.run_id
    for step in range(5):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)

    direct = standin.api("GET", f"{API}/runs/get", params={"run_id": run_id}).json()["run"]
    assert direct["info"]["run_name"] == "contract-run"
    assert len(client.get_metric_history(run_id, "loss")) == 5
    ready = requests.get(f"{server.url}/readyz", timeout=30).json()
    checks = {c["name"]: c for c in ready["checks"]}
    assert checks["credentials"]["reason"] == f"authenticated as {CLIENT_ID}"
    # No volume is set here, so the artifact check warns how to set one; the rest pass.
    assert {c["name"]: c["status"] for c in ready["checks"] if c["status"] != "ok"} == {
        "artifact_store": "warning"
    }


def test_one_token_per_lifetime_and_pooled_connections(run_server, standin: StandIn) -> None:
    server = run_server(**standin.service_settings(MLFLOW_WORKERS="1"))
    with requests.Session() as session:
        for _ in range(5):  # warm up: the worker authenticates and opens its connections
            session.post(
                f"{server.url}{API}/experiments/search", json={"max_results": 5}, timeout=30
            )
            session.get(f"{server.url}/readyz", timeout=30)
        before = standin.stats()
        for _ in range(30):
            assert (
                session.post(
                    f"{server.url}{API}/experiments/search", json={"max_results": 5}, timeout=30
                ).status_code
                == 200
            )
            assert session.get(f"{server.url}/readyz", timeout=30).status_code == 200
    after = standin.stats()
    assert after["api_requests"] - before["api_requests"] >= 60
    assert after["token_requests"] == before["token_requests"]
    assert after["connections"] - before["connections"] <= 4, (before, after)


def test_upstream_permission_denied_is_a_403_naming_the_principal(run_server, standin):
    server = run_server(**standin.service_settings())
    standin.control("deny", principal=CLIENT_ID, prefix=f"{API}/experiments/create")
    response = requests.post(
        f"{server.url}{API}/experiments/create", json={"name": "x"}, timeout=60
    )
    assert response.status_code == 403
    assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert CLIENT_ID in response.json()["message"]


def test_wrong_client_secret_stops_startup_naming_the_credentials(run_server, standin):
    server = run_server(
        wait=False,
        **standin.service_settings(
            DATABRICKS_CLIENT_SECRET="not-the-secret", MLFLOW_APP_CHECK_TIMEOUT_SECONDS="30"
        ),
    )
    assert server.process.wait(timeout=120) != 0
    output = server.log()
    assert re.search(r"^credentials +FAILED", output, re.MULTILINE)
    assert "DATABRICKS_CLIENT_SECRET" in output
    assert "not-the-secret" not in output


def test_sustained_429_reaches_the_client_with_retry_after(run_server, standin) -> None:
    server = run_server(
        **standin.service_settings(MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT="3")
    )
    standin.control(
        "faults", prefix=f"{API}/experiments/search", status=429, times=10000, retry_after=1
    )
    response = requests.post(
        f"{server.url}{API}/experiments/search", json={"max_results": 5}, timeout=120
    )
    assert response.status_code == 429
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert int(response.headers["Retry-After"]) >= 1
    standin.control("reset")
    assert (
        requests.post(
            f"{server.url}{API}/experiments/search", json={"max_results": 5}, timeout=120
        ).status_code
        == 200
    )


def test_workspace_outage_makes_readiness_503_and_recovers(run_server, standin) -> None:
    server = run_server(
        **standin.service_settings(
            MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT="3", MLFLOW_APP_CHECK_TIMEOUT_SECONDS="20"
        )
    )
    standin.control("down", down=True)
    down = requests.get(f"{server.url}/readyz", timeout=120)
    api = requests.post(
        f"{server.url}{API}/experiments/search", json={"max_results": 5}, timeout=120
    )
    assert down.status_code == 503
    assert {c["name"]: c["status"] for c in down.json()["checks"]}["tracking_store"] == "failed"
    assert api.status_code == 503
    assert api.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert int(api.headers["Retry-After"]) >= 1
    standin.control("down", down=False)
    assert requests.get(f"{server.url}/readyz", timeout=120).status_code == 200
    assert (
        requests.post(
            f"{server.url}{API}/experiments/search", json={"max_results": 5}, timeout=120
        ).status_code
        == 200
    )


def pat_user_is_authenticated(server) -> None:
    ready = requests.get(f"{server.url}/readyz", timeout=60).json()
    checks = {c["name"]: c for c in ready["checks"]}
    assert checks["credentials"]["reason"] == "authenticated as pat-user@example.com"
    assert checks["tracking_store"]["status"] == "ok"


def test_a_personal_access_token_works_for_local_runs(run_server, standin: StandIn) -> None:
    server = run_server(
        MLFLOW_TRACKING_URI="databricks",
        MLFLOW_REGISTRY_URI="databricks-uc",
        DATABRICKS_HOST=standin.url,
        DATABRICKS_TOKEN=PAT,
    )
    pat_user_is_authenticated(server)
    assert MlflowClient(server.url).create_experiment("/Users/pat-user@example.com/local")


def test_a_cli_profile_works_for_local_runs(run_server, standin: StandIn, tmp_path) -> None:
    config = tmp_path / "databrickscfg"
    config.write_text(
        f"[DEFAULT]\nhost = http://unused.invalid\n\n[dev]\nhost = {standin.url}\ntoken = {PAT}\n"
    )
    server = run_server(
        MLFLOW_TRACKING_URI="databricks",
        MLFLOW_REGISTRY_URI="databricks-uc",
        DATABRICKS_CONFIG_FILE=str(config),
        DATABRICKS_CONFIG_PROFILE="dev",
    )
    pat_user_is_authenticated(server)


@pytest.mark.token_ttl(50)
def test_tokens_are_refreshed_before_they_expire_not_fetched_per_call(
    run_server, standin: StandIn
) -> None:
    """databricks-sdk treats a token as expired 40 s before its end, so a 50 s token is
    renewed about every 10 s: over 25 s of steady calls a few token requests, none refused."""
    server = run_server(**standin.service_settings(MLFLOW_WORKERS="1"))
    before = standin.stats()
    statuses = []
    deadline = time.monotonic() + 25
    with requests.Session() as session:
        while time.monotonic() < deadline and len(statuses) < 400:
            statuses.append(
                session.post(
                    f"{server.url}{API}/experiments/search", json={"max_results": 1}, timeout=60
                ).status_code
            )
            time.sleep(0.1)
    after = standin.stats()
    assert set(statuses) == {200}
    assert after["api_requests"] - before["api_requests"] >= len(statuses) >= 50
    assert 2 <= after["token_requests"] - before["token_requests"] <= 10, (before, after)
