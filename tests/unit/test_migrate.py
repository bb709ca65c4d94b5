"""mlflow_app/migrate.py and migrate_copy.py on SQLite stores in process: names mapped,
a dry run writes nothing, a name taken by other content is refused by id, a re-run copies
nothing (the end-to-end runs against stock servers are in tests/integration and contract)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlflow_app.migrate import Options, experiment_name, migrate, model_name


@pytest.mark.parametrize(
    ("name", "folder", "mapped"),
    [("churn", "/Shared/team", "/Shared/team/churn"), ("/Users/a/x", "/Shared/t", "/Users/a/x")],
)
def test_bare_experiment_names_go_under_the_folder(name: str, folder: str, mapped: str) -> None:
    assert experiment_name(name, folder) == mapped
    assert experiment_name(name, None) == name


def test_model_names_become_unity_catalog_names_under_the_prefix() -> None:
    assert model_name("My Model-1", "main.ml") == "main.ml.my_model_1"
    assert model_name("My Model-1", None) == "My Model-1"


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A source SQLite store with one experiment, run and model; an empty destination."""
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if "MLFLOW" not in k})
    source = f"sqlite:///{tmp_path / 'source.db'}"
    client = MlflowClient(source, source)
    run = client.create_run(client.create_experiment("churn", str(tmp_path / "source-artifacts")))
    client.log_param(run.info.run_id, "lr", "0.1")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("iris")
    destination = f"sqlite:///{tmp_path / 'destination.db'}"
    MlflowClient(destination).search_experiments()  # creates the schema
    return source, destination


def run(source: str, destination: str, tmp_path: Path, **options) -> tuple[int, str, dict]:
    out, err = io.StringIO(), io.StringIO()
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    code = migrate(Options(source, destination, report=report, **options), out, err)
    return code, out.getvalue(), json.loads(report.read_text()) if report.exists() else {}


def test_a_dry_run_counts_and_writes_nothing(stores, tmp_path: Path) -> None:
    source, destination = stores
    code, out, report = run(source, destination, tmp_path, dry_run=True)
    assert code == 0 and report == {}
    assert "would copy" in out and "churn" in out
    assert MlflowClient(destination).get_experiment_by_name("churn") is None


def test_a_re_run_copies_nothing(stores, tmp_path: Path) -> None:
    source, destination = stores
    code, _, first = run(source, destination, tmp_path)
    again_code, _, again = run(source, destination, tmp_path)
    assert code == again_code == 0
    assert len(first["copied"]["runs"]) == 1 and again["copied"] == {}
    copied = MlflowClient(destination).search_runs(
        [MlflowClient(destination).get_experiment_by_name("churn").experiment_id]
    )
    assert [r.data.params for r in copied] == [{"lr": "0.1"}]


def test_a_model_name_taken_by_other_content_is_refused_by_name(stores, tmp_path: Path) -> None:
    source, destination = stores
    MlflowClient(destination, destination).create_registered_model("iris")
    code, out, report = run(source, destination, tmp_path)
    assert code == 1
    assert report["failed"]["registered models"] == [
        "iris: 'iris' exists with other content (not migrated from this model); rename it or "
        "choose another --model-prefix"
    ]
    assert "failed registered model iris: 'iris' exists with other content" in out
    assert len(report["copied"]["runs"]) == 1  # the rest still moved


def test_an_unreachable_destination_is_refused_in_one_line(stores, tmp_path: Path) -> None:
    source, _ = stores
    err = io.StringIO()
    code = migrate(Options(source, "http://127.0.0.1:9", report=tmp_path / "r.json"), err=err)
    assert code == 2
    assert err.getvalue().startswith("mlflow-app: migrate: cannot read the destination ")
    assert err.getvalue().count("\n") == 1


def test_a_failure_that_quotes_a_uri_never_shows_its_password() -> None:
    from mlflow_app.migrate import passwords_in
    from mlflow_app.migrate_copy import Tally

    tally = Tally(secrets=passwords_in("postgresql://u:hunter2@db/m", "http://127.0.0.1:5000"))
    tally.add("failed", "runs", "r1: OperationalError: postgresql://u:hunter2@db/m refused")
    assert tally.failed == {"runs": ["r1: OperationalError: postgresql://u:***@db/m refused"]}
    assert "secrets" not in tally.as_report() and "hunter2" not in str(tally)
