"""Artifacts on S3 and GCS, proxied or direct, against S3- and GCS-compatible servers.

S3: moto's server (PyPI `moto[server]`). GCS: `gcp-storage-emulator` (PyPI), reached through
google-cloud-storage's STORAGE_EMULATOR_HOST. Both are real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests.s3_server import S3_ENV, s3_client, s3_server
from tests.service_process import free_port


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    with s3_server("mlflow-bucket") as endpoint:
        yield endpoint


@pytest.fixture
def gcs_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import http.server

    from gcp_storage_emulator import server as emulator
    from gcp_storage_emulator.server import create_server

    # The emulator serves one connection at a time, so a keep-alive connection held by one
    # gunicorn worker would block the other; a threading server lets both be served.
    monkeypatch.setattr(emulator.server, "HTTPServer", http.server.ThreadingHTTPServer)
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="mlflow-gcs")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_keys(endpoint: str, prefix: str) -> list[str]:
    listing = s3_client(endpoint).list_objects_v2(Bucket="mlflow-bucket", Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def log_and_fetch(url: str, tmp_path: Path) -> tuple[str, str]:
    """Log a file with the MLflow client; returns (run_id, content read back)."""
    client = MlflowClient(url)
    run_id = client.create_run(client.create_experiment(f"store-{tmp_path.name}")).info.run_id
    source = tmp_path / "weights.txt"
    source.write_text("w=42")
    client.log_artifact(run_id, str(source), "model")
    mlflow.set_tracking_uri(url)
    back = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="model/weights.txt", dst_path=str(tmp_path / "back")
    )
    return run_id, Path(back).read_text()


def test_s3_through_the_proxy(run_server, s3_endpoint: str, tmp_path: Path) -> None:
    server = run_server(
        MLFLOW_ARTIFACTS_DESTINATION="s3://mlflow-bucket/proxied",
        MLFLOW_S3_ENDPOINT_URL=s3_endpoint,
        **S3_ENV,
    )
    run_id, content = log_and_fetch(server.url, tmp_path)
    assert content == "w=42"
    assert any(
        k.endswith(f"{run_id}/artifacts/model/weights.txt")
        for k in s3_keys(s3_endpoint, "proxied/")
    )
    assert s3_keys(s3_endpoint, "proxied/.mlflow-app-probe") == []  # the probe cleaned up
    assert "artifact_store  ok      probe object written" in server.log()


def test_s3_direct_from_the_client(
    run_server, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = run_server(
        MLFLOW_SERVE_ARTIFACTS="false",
        MLFLOW_DEFAULT_ARTIFACT_ROOT="s3://mlflow-bucket/direct",
        MLFLOW_S3_ENDPOINT_URL=s3_endpoint,
        **S3_ENV,
    )
    for key, value in {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    run_id, content = log_and_fetch(server.url, tmp_path)
    assert content == "w=42"
    assert any(
        k.endswith(f"{run_id}/artifacts/model/weights.txt") for k in s3_keys(s3_endpoint, "direct/")
    )


def test_missing_bucket_stops_startup_with_the_setting(run_server, s3_endpoint: str):
    server = run_server(
        wait=False,
        MLFLOW_ARTIFACTS_DESTINATION="s3://no-such-bucket/x",
        MLFLOW_S3_ENDPOINT_URL=s3_endpoint,
        MLFLOW_APP_CHECK_TIMEOUT_SECONDS="20",
        **S3_ENV,
    )
    assert server.process.wait(timeout=120) != 0
    output = server.log()
    assert "artifact_store  FAILED" in output
    assert "check MLFLOW_ARTIFACTS_DESTINATION" in output
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in output


def test_gcs_through_the_proxy(run_server, gcs_endpoint: str, tmp_path: Path) -> None:
    server = run_server(
        MLFLOW_ARTIFACTS_DESTINATION="gs://mlflow-gcs/proxied", STORAGE_EMULATOR_HOST=gcs_endpoint
    )
    _, content = log_and_fetch(server.url, tmp_path)
    assert content == "w=42"


def test_gcs_direct_from_the_client(
    run_server, gcs_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = run_server(
        MLFLOW_SERVE_ARTIFACTS="false",
        MLFLOW_DEFAULT_ARTIFACT_ROOT="gs://mlflow-gcs/direct",
        STORAGE_EMULATOR_HOST=gcs_endpoint,
    )
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    _, content = log_and_fetch(server.url, tmp_path)
    assert content == "w=42"
