"""Databricks mode end to end: artifacts in a UC volume through the proxy, models in UC."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from tests.contract.standin_handle import CLIENT_ID, CLIENT_SECRET, VOLUME, StandIn
from tests.s3_server import s3_client, s3_server
from tests.service_process import children_of

API = "/api/2.0/mlflow"


def volume_settings(standin: StandIn, **overrides: str) -> dict[str, str]:
    return standin.service_settings(MLFLOW_DEFAULT_ARTIFACT_ROOT=f"{VOLUME}/mlflow", **overrides)


def test_artifacts_land_in_the_volume_and_are_browsed_through_the_proxy(
    run_server, standin: StandIn, tmp_path: Path
) -> None:
    server = run_server(**volume_settings(standin))
    client = MlflowClient(server.url)
    experiment_id = client.create_experiment("/Shared/volume-artifacts")
    run = client.create_run(experiment_id)
    payload = os.urandom(3 * 1024 * 1024)
    (tmp_path / "weights.bin").write_bytes(payload)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "résumé.txt").write_text("bonjour")
    client.log_artifact(run.info.run_id, str(tmp_path / "weights.bin"))
    client.log_artifacts(run.info.run_id, str(tmp_path / "notes"), "notes")

    # Clients are shown proxy URIs; the workspace stores the volume location.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = standin.api("GET", f"{API}/runs/get", params={"run_id": run.info.run_id}).json()
    stored_uri = stored["run"]["info"]["artifact_uri"]
    assert stored_uri.startswith(f"dbfs:{VOLUME}/mlflow/")
    on_volume = standin.volume_file(stored_uri.removeprefix("dbfs:") + "/weights.bin")
    assert hashlib.sha256(on_volume.read_bytes()).digest() == hashlib.sha256(payload).digest()

    # Browse as the UI does, through the ajax API.
    listing = requests.get(
        f"{server.url}/ajax-api/2.0/mlflow/artifacts/list",
        params={"run_id": run.info.run_id, "path": "notes"},
        timeout=60,
    ).json()
    assert [f["path"] for f in listing["files"]] == ["notes/résumé.txt"]
    text = requests.get(
        f"{server.url}/get-artifact",
        params={"run_uuid": run.info.run_id, "path": "notes/résumé.txt"},
        timeout=60,
    )
    assert text.status_code == 200 and text.text == "bonjour"
    fetched = client.download_artifacts(run.info.run_id, "weights.bin", str(tmp_path / "out"))
    assert Path(fetched).read_bytes() == payload


def test_experiments_that_name_their_own_location_keep_it(run_server, standin: StandIn):
    server = run_server(**volume_settings(standin))
    response = requests.post(
        f"{server.url}{API}/experiments/create",
        json={"name": "/Shared/own-location", "artifact_location": "ftp://elsewhere/x"},
        timeout=60,
    )
    # The workspace refuses what it cannot store; the refusal reaches the client as a 4xx.
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def register_iris(server, standin: StandIn) -> tuple:
    """Log a model through the service, register it in UC and alias it; (version, resolved)."""
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    try:
        standin.api(
            "POST",
            f"{API}/unity-catalog/registered-models/create",
            json={"name": "main.mlflow.iris"},
        ).raise_for_status()
        features = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1], [0.1, 0.8]])
        model = LogisticRegression().fit(features, [0, 1, 1, 0])
        mlflow.set_experiment("/Shared/uc-models")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", input_example=features[:2])
        version = mlflow.register_model(info.model_uri, "main.mlflow.iris")
        client = MlflowClient(server.url, server.url)
        client.set_registered_model_alias("main.mlflow.iris", "champion", version.version)
        return version, client.get_model_version_by_alias("main.mlflow.iris", "champion")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def test_a_model_is_registered_in_unity_catalog_and_resolved_by_alias(
    run_server, standin: StandIn, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a failure shows at once
    server = run_server(**volume_settings(standin))
    version, resolved = register_iris(server, standin)

    assert resolved.version == version.version == "1"
    assert resolved.status == "READY"
    # The version's files are the logged model's (MLflow's server sends no model_id field).
    assert resolved.source == version.source and resolved.source.startswith("models:/m-")
    direct = standin.api(
        "GET",
        f"{API}/unity-catalog/registered-models/alias",
        params={"name": "main.mlflow.iris", "alias": "champion"},
    ).json()["model_version"]
    assert direct["version"] == "1" and direct["status"] == "READY"
    uploaded = standin.model_files("main.mlflow.iris", "1")
    names = {p.name for p in uploaded}
    assert "MLmodel" in names and names & {"model.skops", "model.pkl"}
    # The model's page lists its versions with this search (UC's search results carry no
    # tags or aliases, which MLflow's handler could not serialise: a 500).
    listed = MlflowClient(server.url, server.url).search_model_versions("name='main.mlflow.iris'")
    assert [v.version for v in listed] == ["1"]


def test_model_files_take_the_files_api_even_where_the_workspace_prefers_cloud_storage(
    run_server, standin: StandIn, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    standin.control("uc-model-files", files_api=False)
    server = run_server(**volume_settings(standin))
    _, resolved = register_iris(server, standin)

    assert resolved.status == "READY"
    assert "MLmodel" in {p.name for p in standin.model_files("main.mlflow.iris", "1")}
    paths = [c["path"] for c in standin.calls()]
    assert not any(p.endswith("/generate-temporary-credentials") for p in paths)


@pytest.fixture
def metastore_bucket() -> Iterator[str]:
    """The S3 bucket the stand-in's model versions are stored in (storage_location)."""
    with s3_server("standin-metastore") as endpoint:
        yield endpoint


def test_following_the_workspace_model_files_go_to_s3_with_temporary_credentials(
    run_server, standin: StandIn, metastore_bucket: str, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    standin.control("uc-model-files", files_api=False)
    server = run_server(
        **volume_settings(
            standin,
            MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC="false",
            MLFLOW_S3_ENDPOINT_URL=metastore_bucket,
            AWS_DEFAULT_REGION="us-east-1",
        )
    )
    _, resolved = register_iris(server, standin)

    assert resolved.status == "READY"
    listing = s3_client(metastore_bucket).list_objects_v2(
        Bucket="standin-metastore", Prefix="models/main.mlflow.iris/versions/1/"
    )
    assert "MLmodel" in {key["Key"].rsplit("/", 1)[1] for key in listing.get("Contents", [])}
    assert standin.model_files("main.mlflow.iris", "1") == []
    paths = [c["path"] for c in standin.calls()]
    assert any(p.endswith("/generate-temporary-credentials") for p in paths)


def test_a_volume_the_principal_cannot_write_stops_startup_naming_the_grant(
    run_server, standin: StandIn
) -> None:
    standin.control("deny", principal=CLIENT_ID, prefix="/api/2.0/fs/")
    server = run_server(wait=False, **volume_settings(standin))
    assert server.process.wait(timeout=120) != 0
    output = server.log()
    failed = [line for line in output.splitlines() if line.startswith("artifact_store")]
    assert failed and "FAILED" in failed[0], output
    assert "WRITE VOLUME on main.mlflow.artifacts" in failed[0]
    assert "PermissionDenied" in failed[0] or "PERMISSION_DENIED" in failed[0]
    assert CLIENT_SECRET not in output


def test_without_a_volume_readiness_warns_how_to_set_one(run_server, standin: StandIn):
    server = run_server(**standin.service_settings())
    checks = {
        c["name"]: c for c in requests.get(f"{server.url}/readyz", timeout=60).json()["checks"]
    }
    assert checks["artifact_store"]["status"] == "warning"
    assert "MLFLOW_DEFAULT_ARTIFACT_ROOT=/Volumes/" in checks["artifact_store"]["fix"]


def test_the_uis_registry_searches_work_against_unity_catalog(run_server, standin: StandIn):
    """MLflow's handlers pass an absent filter or order_by as empty values, which the UC store
    refused with a 500: every run page and the models list failed in the UI."""
    server = run_server(**volume_settings(standin))
    for path in (
        "/ajax-api/2.0/mlflow/model-versions/search?filter=run_id%3D%27abc%27",
        "/ajax-api/2.0/mlflow/registered-models/search?max_results=25",
    ):
        answer = requests.get(server.url + path, timeout=30)
        assert answer.status_code == 200, (path, answer.text)
    ordered = requests.get(
        f"{server.url}/ajax-api/2.0/mlflow/registered-models/search?order_by=name",
        timeout=30,
    )
    assert ordered.status_code == 400
    assert ordered.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def change_grant(standin: StandIn, securable: str, privilege: str, change: str) -> None:
    answer = standin.api(
        "PATCH",
        f"/api/2.1/unity-catalog/permissions/{securable}",
        json={"changes": [{"principal": CLIENT_ID, change: [privilege]}]},
    )
    assert answer.ok, answer.text


def test_readiness_names_the_grant_the_principal_lacks_to_write(run_server, standin):
    server = run_server(**volume_settings(standin))

    def grants_check() -> tuple[int, dict]:
        ready = requests.get(f"{server.url}/readyz", timeout=30)
        return ready.status_code, next(c for c in ready.json()["checks"] if c["name"] == "grants")

    status, check = grants_check()
    assert status == 200 and "CREATE MODEL" in check["reason"], check
    change_grant(standin, "schema/main.mlflow", "CREATE_MODEL", "remove")
    change_grant(standin, "volume/main.mlflow.artifacts", "WRITE_VOLUME", "remove")

    status, check = grants_check()
    assert status == 503 and check["status"] == "failed"
    assert f"GRANT CREATE MODEL ON SCHEMA main.mlflow TO `{CLIENT_ID}`" in check["fix"]
    assert f"GRANT WRITE VOLUME ON VOLUME main.mlflow.artifacts TO `{CLIENT_ID}`" in check["fix"]
    refused = requests.post(
        f"{server.url}{API}/registered-models/create",
        json={"name": "main.mlflow.refused"},
        timeout=60,
    )
    assert refused.status_code == 403 and "CREATE MODEL" in refused.json()["message"]

    change_grant(standin, "schema/main.mlflow", "CREATE_MODEL", "add")
    change_grant(standin, "volume/main.mlflow.artifacts", "WRITE_VOLUME", "add")
    assert grants_check()[0] == 200


def peak_rss_mb(pids: list[int]) -> float:
    """The largest peak resident set (VmHWM) among the processes, in MB."""
    peaks = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        peaks.append(
            int(next(ln for ln in status.splitlines() if ln.startswith("VmHWM")).split()[1])
        )
    return max(peaks) / 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def random_file(path: Path, megabytes: int) -> Path:
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1 << 20))
    return path


def test_a_200_mb_artifact_goes_to_the_volume_in_parts_and_back(run_server, standin, tmp_path):
    server = run_server(**volume_settings(standin, MLFLOW_WORKERS="1"))
    workers = children_of(server.process.pid).get(server.process.pid, [])
    client = MlflowClient(server.url)
    run_id = client.create_run(client.create_experiment("/Shared/large")).info.run_id
    before = peak_rss_mb(workers)
    big = random_file(tmp_path / "big.bin", 200)
    calls_before = len(standin.calls())

    client.log_artifact(run_id, str(big))
    back = Path(client.download_artifacts(run_id, "big.bin", str(tmp_path / "back")))

    stored = next(standin.volume_file(VOLUME).rglob("big.bin"))
    assert sha256_of(stored) == sha256_of(big) == sha256_of(back)
    paths = [c["path"] for c in standin.calls()[calls_before:]]
    # databricks-sdk went the multipart way: part URLs, no single 200 MB PUT to the workspace.
    assert "/api/2.0/fs/create-upload-part-urls" in paths
    assert "/api/2.0/fs/create-download-url" in paths
    # Streamed in parts (databricks-sdk holds 10 parts of 10 MiB in flight for files up to
    # 1000 MB): the worker never held the file whole.
    assert peak_rss_mb(workers) - before < 200, (before, peak_rss_mb(workers))


def test_a_logged_model_lives_in_the_volume_and_loads_with_no_databricks_credentials(
    run_server, standin: StandIn, monkeypatch, tmp_path: Path
) -> None:
    """MLflow 3's log_model creates a logged model; the workspace keeps its files under the
    experiment's location, `<location>/logged_models/<id>/artifacts`, which for an experiment
    the service made is in the volume, so the client reaches them through the proxy."""
    for name in [n for n in os.environ if n.startswith("DATABRICKS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = run_server(**volume_settings(standin))
    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1], [0.1, 0.8]])
    mlflow.set_tracking_uri(server.url)
    try:
        mlflow.set_experiment("logged-models")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                LogisticRegression().fit(features, [0, 1, 1, 0]), name="clf"
            )
        loaded = mlflow.pyfunc.load_model(f"models:/{info.model_id}")
        shown = MlflowClient(server.url).get_logged_model(info.model_id)
    finally:
        mlflow.set_tracking_uri(None)

    assert list(loaded.predict(features)) == [0, 1, 1, 0]
    assert shown.artifact_location.startswith("mlflow-artifacts:/")
    stored = standin.api("GET", f"{API}/logged-models/{info.model_id}").json()["model"]["info"]
    location = stored["artifact_uri"]
    assert location.startswith(f"dbfs:{VOLUME}/mlflow/")
    assert location.endswith(f"/logged_models/{info.model_id}/artifacts")
    assert standin.volume_file(location.removeprefix("dbfs:") + "/MLmodel").is_file()
    # The UI's logged-model page lists and opens the files through the service.
    listing = requests.get(
        f"{server.url}/ajax-api/2.0/mlflow/logged-models/{info.model_id}/artifacts/directories",
        timeout=60,
    )
    assert "MLmodel" in {f["path"] for f in listing.json()["files"]}
    mlmodel = requests.get(
        f"{server.url}/ajax-api/2.0/mlflow/logged-models/{info.model_id}/artifacts/files",
        params={"artifact_file_path": "MLmodel"},
        timeout=60,
    )
    assert mlmodel.status_code == 200 and info.model_id in mlmodel.text


def test_a_version_from_a_runs_files_without_a_logged_model_registers_in_unity_catalog(
    run_server, standin: StandIn, monkeypatch, tmp_path: Path
) -> None:
    """MLflow 2 style: the model's files are a run's artifacts and no logged model exists.
    MLflow's handler passes model_id "" (the request's default) to the UC store, which then
    asks the tracking server for logged model "" and fails."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = run_server(**volume_settings(standin))
    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1], [0.1, 0.8]])
    saved = tmp_path / "model"
    mlflow.sklearn.save_model(
        LogisticRegression().fit(features, [0, 1, 1, 0]), saved, input_example=features[:2]
    )
    client = MlflowClient(server.url, server.url)
    run = client.create_run(client.create_experiment("/Shared/plain-files"))
    client.log_artifacts(run.info.run_id, str(saved), "model")
    client.create_registered_model("main.mlflow.plain")

    version = client.create_model_version(
        "main.mlflow.plain", f"runs:/{run.info.run_id}/model", run.info.run_id
    )

    assert version.version == "1"
    assert "MLmodel" in {p.name for p in standin.model_files("main.mlflow.plain", "1")}


def test_files_that_are_not_a_model_with_a_signature_are_a_400_not_a_500(
    run_server, standin: StandIn, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = run_server(**volume_settings(standin))
    client = MlflowClient(server.url, server.url)
    run = client.create_run(client.create_experiment("/Shared/not-a-model"))
    (tmp_path / "notes.txt").write_text("no MLmodel here")
    client.log_artifact(run.info.run_id, str(tmp_path / "notes.txt"), "files")
    client.create_registered_model("main.mlflow.notes")

    answer = requests.post(
        f"{server.url}{API}/model-versions/create",
        json={
            "name": "main.mlflow.notes",
            "source": f"runs:/{run.info.run_id}/files",
            "run_id": run.info.run_id,
        },
        timeout=60,
    )

    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert answer.json()["message"].startswith("Unable to load model metadata")
