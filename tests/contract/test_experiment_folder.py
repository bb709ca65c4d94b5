"""Experiment names against a workspace that takes only absolute paths and has no
experiment 0: bare names and experiment 0 live in MLFLOW_APP_EXPERIMENT_FOLDER."""

from __future__ import annotations

import re

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from tests.contract.standin_handle import CLIENT_ID, StandIn

API = "/api/2.0/mlflow"


def stored_name(standin: StandIn, experiment_id: str) -> str:
    """The experiment's name as the workspace keeps it."""
    answer = standin.api("GET", f"{API}/experiments/get", params={"experiment_id": experiment_id})
    return answer.json()["experiment"]["name"]


def test_bare_names_map_into_the_folder_both_ways(run_server, standin: StandIn) -> None:
    server = run_server(**standin.service_settings(MLFLOW_APP_EXPERIMENT_FOLDER="/Shared/team"))
    client = MlflowClient(server.url)

    experiment_id = client.create_experiment("churn")
    assert stored_name(standin, experiment_id) == "/Shared/team/churn"
    assert client.get_experiment(experiment_id).name == "churn"
    assert client.get_experiment_by_name("churn").experiment_id == experiment_id
    assert "churn" in [e.name for e in client.search_experiments()]
    client.rename_experiment(experiment_id, "churn-v2")
    assert stored_name(standin, experiment_id) == "/Shared/team/churn-v2"

    elsewhere = client.create_experiment("/Shared/elsewhere")
    assert client.get_experiment(elsewhere).name == "/Shared/elsewhere"


@pytest.fixture
def server_without_experiment(run_server, standin: StandIn, monkeypatch: pytest.MonkeyPatch):
    """The app on the team folder, and a client environment that names no experiment."""
    server = run_server(**standin.service_settings(MLFLOW_APP_EXPERIMENT_FOLDER="/Shared/team"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return server


def test_a_client_that_never_sets_an_experiment_logs_into_default(
    server_without_experiment, standin: StandIn
) -> None:
    server = server_without_experiment
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5)
    client = MlflowClient(server.url)
    experiment_id = run.info.experiment_id
    assert experiment_id != "0"
    assert client.get_experiment(experiment_id).name == "Default"
    assert stored_name(standin, experiment_id) == "/Shared/team/Default"
    assert client.get_experiment("0").experiment_id == experiment_id
    assert [r.info.run_id for r in client.search_runs(["0"])] == [run.info.run_id]


def test_a_trace_from_a_client_that_never_sets_an_experiment_lands_in_default(
    server_without_experiment, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_without_experiment
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")  # exported before we look
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    @mlflow.trace
    def add(a: int, b: int) -> int:
        return a + b

    try:
        assert add(2, 3) == 5
        trace_id = mlflow.get_last_active_trace_id()
    finally:
        mlflow.set_tracking_uri(None)
    client = MlflowClient(server.url)
    trace = client.get_trace(trace_id)
    experiment_id = trace.info.experiment_id
    assert experiment_id != "0"
    assert stored_name(standin, experiment_id) == "/Shared/team/Default"
    assert [t.info.trace_id for t in client.search_traces(locations=["0"])] == [trace_id]


def test_a_folder_the_principal_may_not_manage_stops_startup_naming_the_grant(
    run_server, standin: StandIn
) -> None:
    folder = "/Users/pat-user@example.com/ml"
    assert standin.api("POST", "/api/2.0/workspace/mkdirs", json={"path": folder}).ok
    settings = standin.service_settings(MLFLOW_APP_EXPERIMENT_FOLDER=folder)

    refused = run_server(wait=False, **settings)
    assert refused.process.wait(timeout=120) != 0
    output = refused.log()
    assert re.search(r"^experiment_folder +FAILED", output, re.MULTILINE), output
    assert f"CAN MANAGE on the workspace folder {folder}" in output

    status = standin.api("GET", "/api/2.0/workspace/get-status", params={"path": folder})
    granted = standin.api(
        "PATCH",
        f"/api/2.0/permissions/directories/{status.json()['object_id']}",
        json={
            "access_control_list": [
                {"service_principal_name": CLIENT_ID, "permission_level": "CAN_MANAGE"}
            ]
        },
    )
    assert granted.ok
    server = run_server(**settings)
    experiment_id = MlflowClient(server.url).create_experiment("forecast")
    assert stored_name(standin, experiment_id) == f"{folder}/forecast"
    ready = requests.get(f"{server.url}/readyz", timeout=30).json()
    check = next(c for c in ready["checks"] if c["name"] == "experiment_folder")
    assert check["status"] == "ok" and folder in check["reason"]
