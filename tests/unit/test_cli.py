"""mlflow_app/cli.py, in process: what each local command prints and the exit status it
returns (the Databricks commands run against the stand-in in tests/contract)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_app.cli import main
from mlflow_app.config import settings_table

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private copy of the environment (the commands export MLflow's store variables)."""
    copy = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "_MLFLOW"))}
    copy["MLFLOW_APP_DATA_DIR"] = str(tmp_path)
    monkeypatch.setattr(os, "environ", copy)
    return copy


def test_config_table_prints_the_settings_table(environ, capsys) -> None:
    assert main(["config", "--table"]) == 0
    assert capsys.readouterr().out.strip() == settings_table()


def test_config_prints_the_effective_settings_with_the_password_masked(environ, capsys) -> None:
    environ["MLFLOW_BACKEND_STORE_URI"] = "postgresql://mlflow:hunter2@db/mlflow"
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "postgresql://mlflow:***@db/mlflow" in out and "hunter2" not in out
    assert any(line.split() == ["profile", "external"] for line in out.splitlines())


def test_a_bad_setting_is_one_line_on_stderr_and_exit_status_2(environ, capsys) -> None:
    environ["MLFLOW_APP_THREADS"] = "lots"
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlflow-app: MLFLOW_APP_THREADS: 'lots' is not a whole number")
    assert err.count("\n") == 1


def test_db_check_fails_before_upgrade_and_passes_after(environ, capsys) -> None:
    environ["MLFLOW_APP_MIGRATE"] = "check"
    assert main(["db", "check"]) == 1
    assert "mlflow-app: " in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "check"]) == 0


def test_check_prints_one_json_result_per_check_and_passes_on_the_embedded_store(
    environ: dict[str, str],
) -> None:
    # In its own process: the checks ask MLflow's handler stores, which MLflow caches for the
    # process and whose first use sets the process-wide tracking URI.
    done = subprocess.run(
        [sys.executable, "-m", "mlflow_app.cli", "check", "--json"],
        env=environ,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results and all(r["status"] in ("ok", "warning") for r in results)
    assert {"tracking_store", "artifact_store"} <= {r["name"] for r in results}


def test_an_unknown_command_is_a_usage_error(environ, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["serve"])
    assert stopped.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
