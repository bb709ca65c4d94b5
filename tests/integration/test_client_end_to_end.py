"""The real MLflow client against the real service: everything a user logs comes back."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from tests.service_process import Server


@pytest.fixture(scope="module")
def client(server: Server) -> MlflowClient:
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    return MlflowClient(server.url, server.url)


def test_experiment_run_params_and_metric_history(client: MlflowClient) -> None:
    experiment_id = client.create_experiment("e2e-metrics")
    run = client.create_run(experiment_id, run_name="metrics-run")
    client.log_param(run.info.run_id, "alpha", "0.5")
    for step in range(50):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
    client.set_terminated(run.info.run_id)

    fetched = client.get_run(run.info.run_id)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert fetched.data.params == {"alpha": "0.5"}
    assert fetched.info.status == "FINISHED"
    assert [m.step for m in history] == list(range(50))
    assert history[-1].value == pytest.approx(1 / 50)
    found = client.search_runs([experiment_id], filter_string="params.alpha = '0.5'")
    assert [r.info.run_id for r in found] == [run.info.run_id]


def test_artifacts_through_the_proxy(client: MlflowClient, server: Server, tmp_path: Path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024))
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "deep.txt").write_text("deep")
    (tree / "top.txt").write_text("top")
    unicode_file = tmp_path / "données-模型 ü.txt"
    unicode_file.write_text("unicode ✓", encoding="utf-8")

    run = client.create_run(client.create_experiment("e2e-artifacts"))
    run_id = run.info.run_id
    client.log_artifact(run_id, str(big))
    client.log_artifacts(run_id, str(tree), "tree")
    client.log_artifact(run_id, str(unicode_file), "uni")

    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["big.bin", "tree", "uni"]
    assert [a.path for a in client.list_artifacts(run_id, "tree/a/b")] == ["tree/a/b/deep.txt"]
    back = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "d")))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    assert hashlib.sha256((back / "big.bin").read_bytes()).hexdigest() == digest
    assert (back / "tree" / "a" / "b" / "deep.txt").read_text() == "deep"
    assert (back / "uni" / unicode_file.name).read_text(encoding="utf-8") == "unicode ✓"
    # The files live under the proxy's destination, nowhere else.
    stored = list((server.data_dir / "artifacts").rglob("big.bin"))
    assert len(stored) == 1


def test_sklearn_model_registry_and_alias(client: MlflowClient) -> None:
    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    labels = np.array([0, 0, 1, 1])
    model = LogisticRegression().fit(features, labels)
    mlflow.set_experiment("e2e-models")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="e2e-classifier",
            pip_requirements=["scikit-learn"],
            input_example=features[:1],
        )
    version = info.registered_model_version
    client.set_registered_model_alias("e2e-classifier", "champion", str(version))

    loaded = mlflow.pyfunc.load_model("models:/e2e-classifier@champion")
    assert list(loaded.predict(features)) == list(model.predict(features))
    by_alias = client.get_model_version_by_alias("e2e-classifier", "champion")
    assert by_alias.version == str(version)
    assert mlflow.sklearn.load_model(info.model_uri).predict([[3.0]])[0] == 1


def test_traces_are_ingested_and_searchable(client: MlflowClient, server: Server) -> None:
    experiment_id = client.create_experiment("e2e-traces")
    mlflow.set_experiment(experiment_id=experiment_id)

    @mlflow.trace(name="outer")
    def outer(x: int) -> int:
        return inner(x) + 1

    @mlflow.trace(name="inner")
    def inner(x: int) -> int:
        return x * 2

    assert outer(20) == 41
    mlflow.flush_trace_async_logging()
    traces = client.search_traces(locations=[experiment_id])
    assert len(traces) == 1
    spans = {span.name: span for span in traces[0].data.spans}
    assert set(spans) == {"outer", "inner"}
    assert spans["outer"].outputs == 41
    # Spans travel over OTLP (/v1/traces), which stock MLflow serves only from FastAPI.
    assert '"POST /v1/traces HTTP/1.1" 200' in server.log()


def test_dataset_inputs_are_recorded(client: MlflowClient) -> None:
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(frame, name="train-set", targets="y")
    mlflow.set_experiment("e2e-datasets")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.tags[0].value) for i in inputs] == [("train-set", "training")]


def test_ui_ajax_routes_answer(client: MlflowClient, server: Server) -> None:
    experiment_id = client.create_experiment("e2e-ajax")
    response = requests.post(
        f"{server.url}/ajax-api/2.0/mlflow/experiments/search",
        json={"max_results": 10},
        timeout=10,
    )
    assert response.status_code == 200
    assert experiment_id in {e["experiment_id"] for e in response.json()["experiments"]}
