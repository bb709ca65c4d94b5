"""The MLflow server environment derived from settings."""

from __future__ import annotations

from pathlib import Path

from mlflow_app.config import load_settings
from mlflow_app.store_environment import apply_store_environment, store_environment


def test_embedded_default_matches_mlflow_server_with_serve_artifacts(tmp_path: Path) -> None:
    env = store_environment(load_settings({"MLFLOW_APP_DATA_DIR": str(tmp_path)}))
    assert env["_MLFLOW_SERVER_FILE_STORE"] == f"sqlite:///{tmp_path}/mlflow.db"
    assert env["_MLFLOW_SERVER_REGISTRY_STORE"] == env["_MLFLOW_SERVER_FILE_STORE"]
    assert env["_MLFLOW_SERVER_ARTIFACT_ROOT"] == "mlflow-artifacts:/"
    assert env["_MLFLOW_SERVER_SERVE_ARTIFACTS"] == "true"
    assert env["_MLFLOW_SERVER_ARTIFACT_DESTINATION"] == str(tmp_path / "artifacts")
    assert env["MLFLOW_SERVER_ALLOWED_HOSTS"] == "*"  # the front door checks hosts


def test_static_prefix_and_no_proxy(tmp_path: Path) -> None:
    env = store_environment(
        load_settings(
            {
                "MLFLOW_STATIC_PREFIX": "/mlflow",
                "MLFLOW_SERVE_ARTIFACTS": "false",
                "MLFLOW_DEFAULT_ARTIFACT_ROOT": "s3://b/p",
            }
        )
    )
    assert env["_MLFLOW_STATIC_PREFIX"] == "/mlflow"
    assert env["_MLFLOW_SERVER_ARTIFACT_ROOT"] == "s3://b/p"
    assert "_MLFLOW_SERVER_SERVE_ARTIFACTS" not in env


def test_apply_writes_the_environment_and_creates_local_directories(tmp_path: Path) -> None:
    target: dict[str, str] = {}
    apply_store_environment(load_settings({"MLFLOW_APP_DATA_DIR": str(tmp_path / "d")}), target)
    assert target["_MLFLOW_SERVER_FILE_STORE"].endswith("/d/mlflow.db")
    assert (tmp_path / "d" / "artifacts").is_dir()
