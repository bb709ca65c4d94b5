"""The MLflow UI, rendered by headless Chromium against the service, shows what a user logged."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import requests

from tests.integration.browser import CHROMIUM, CHROMIUM_FLAGS, needs_chromium
from tests.service_process import Server

pytestmark = needs_chromium


def rendered_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (virtual time lets the app fetch and render)."""
    result = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


@pytest.fixture(scope="module")
def logged(server: Server) -> dict[str, str]:
    api = f"{server.url}/api/2.0/mlflow"
    experiment_id = requests.post(
        f"{api}/experiments/create", json={"name": "ui-check-experiment-ü"}, timeout=10
    ).json()["experiment_id"]
    run = requests.post(
        f"{api}/runs/create",
        json={"experiment_id": experiment_id, "run_name": "ui-check-run-7"},
        timeout=10,
    ).json()["run"]
    run_id = run["info"]["run_id"]
    requests.post(
        f"{api}/runs/log-parameter",
        json={"run_id": run_id, "key": "ui_param", "value": "ui-value-31"},
        timeout=10,
    )
    return {"experiment_id": experiment_id, "run_id": run_id}


def test_experiments_page_lists_the_experiment(server: Server, logged: dict, tmp_path: Path):
    dom = rendered_dom(f"{server.url}/#/experiments", tmp_path / "profile")
    assert "ui-check-experiment-ü" in dom


def test_run_page_shows_run_name_and_param(server: Server, logged: dict, tmp_path: Path):
    url = f"{server.url}/#/experiments/{logged['experiment_id']}/runs/{logged['run_id']}"
    dom = rendered_dom(url, tmp_path / "profile")
    assert "ui-check-run-7" in dom
    assert "ui-value-31" in dom


def test_ui_requests_all_succeed(server: Server, logged: dict, tmp_path: Path) -> None:
    rendered_dom(f"{server.url}/#/experiments/{logged['experiment_id']}", tmp_path / "p")
    statuses = re.findall(r'"(GET|POST) (\S+) HTTP/1.1" (\d{3})', server.log())
    failed = [(m, p, s) for m, p, s in statuses if s.startswith("5")]
    # users/current belongs to MLflow's basic-auth app; stock `mlflow server` answers it 404 too.
    missing = [
        (m, p, s)
        for m, p, s in statuses
        if s == "404" and "/ajax-api/" in p and "users/current" not in p
    ]
    assert statuses, "no access log lines were read"
    assert failed == []
    assert missing == []
