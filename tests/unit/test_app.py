"""mlflow_app/app.py: the middleware chain in its documented order, and the store wrappers'.

A plain Flask app stands in for MLflow's; the stores are not wrapped (that is store_hooks'
and each wrapper's own test), so what is checked here is order and wiring.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import Client

from mlflow_app import app as app_module
from mlflow_app.config import Settings, load_settings

SEARCH = "/api/2.0/mlflow/experiments/search"


def settings_for(tmp_path: Path, **environ: str) -> Settings:
    return load_settings({"MLFLOW_APP_DATA_DIR": str(tmp_path), **environ})


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(app_module, "prepare_stores", lambda settings: None)
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "unit-test-csrf-key")  # MLflow's auth

    def build(**environ: str) -> Client:
        for name, value in environ.items():  # MLflow's auth reads its settings from os.environ
            monkeypatch.setenv(name, value)
        mlflow_app = Flask("mlflow-stand-in")
        mlflow_app.add_url_rule(SEARCH, "search", lambda: {"experiments": []})
        return Client(app_module.build_app(settings_for(tmp_path, **environ), mlflow_app))

    return build


def test_a_request_passes_the_whole_chain_to_mlflow_and_carries_a_request_id(serve) -> None:
    answer = serve(MLFLOW_APP_METRICS="false").get(SEARCH, headers={"Host": "localhost"})
    assert answer.status_code == 200 and answer.json == {"experiments": []}
    assert answer.headers["X-Request-Id"]


def test_a_foreign_host_is_refused_before_access_control_asks_who_is_calling(serve) -> None:
    client = serve(
        MLFLOW_APP_METRICS="false",
        MLFLOW_APP_AUTH="basic",
        MLFLOW_AUTH_ADMIN_PASSWORD="a-long-admin-password-1",
    )
    foreign = client.get(SEARCH, headers={"Host": "evil.example"})
    anonymous = client.get(SEARCH, headers={"Host": "localhost"})
    assert foreign.status_code == 403 and foreign.json["error_code"] == "PERMISSION_DENIED"
    assert anonymous.status_code == 401 and anonymous.json["error_code"] == "UNAUTHENTICATED"
    # The request id is outermost: refusals carry one too.
    assert foreign.headers["X-Request-Id"] and anonymous.headers["X-Request-Id"]


def test_liveness_is_answered_inside_access_control_without_credentials(serve) -> None:
    client = serve(
        MLFLOW_APP_METRICS="false",
        MLFLOW_APP_AUTH="basic",
        MLFLOW_AUTH_ADMIN_PASSWORD="a-long-admin-password-1",
        MLFLOW_STATIC_PREFIX="/mlflow",
    )
    assert client.get("/mlflow/healthz", headers={"Host": "localhost"}).status_code == 200
    assert client.get("/mlflow" + SEARCH, headers={"Host": "localhost"}).status_code == 401


def test_with_metrics_off_nothing_answers_the_exposition_path(serve) -> None:
    answer = serve(MLFLOW_APP_METRICS="false").get("/metrics", headers={"Host": "localhost"})
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("environ", "order"),
    [
        (
            {"MLFLOW_BACKEND_STORE_URI": "databricks", "DATABRICKS_HOST": "https://w.example"},
            [
                "reuse_host_credentials",
                "keep_artifacts_in_volume",
                "keep_bare_names_in_folder",
                "instrument_mlflow_stores",
            ],
        ),
        (
            {},
            [
                "sqlite_sessions",
                "fail_fast_while_unreachable",
                "instrument_mlflow_stores",
            ],
        ),
        (
            {"MLFLOW_APP_METRICS": "false"},
            ["sqlite_sessions", "fail_fast_while_unreachable"],
        ),
    ],
)
def test_store_wrappers_are_listed_innermost_first_with_metrics_outermost(
    tmp_path: Path, environ: dict[str, str], order: list[str]
) -> None:
    wrappers = app_module.store_wrappers(settings_for(tmp_path, **environ))
    assert [w.__name__ for w in wrappers] == order
