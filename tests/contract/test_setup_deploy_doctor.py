"""`mlflow-app setup databricks`, `deploy` and `doctor`, run as commands against the stand-in
workspace: the resulting state, idempotence, resume after a failure at each step, dry run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.contract.standin_handle import CLIENT_ID, CLIENT_SECRET, PAT, StandIn
from tests.service_process import REPO, free_port

CALLER = "pat-user@example.com"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


def mlflow_app(
    standin: StandIn, state: Path, *args: str, host: str | None = None, oauth: bool = False
) -> subprocess.CompletedProcess:
    """The CLI signed in with a personal access token, or with OAuth (a service principal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_"))}
    env.update(DATABRICKS_HOST=host or standin.url)
    if oauth:
        env.update(DATABRICKS_CLIENT_ID=CLIENT_ID, DATABRICKS_CLIENT_SECRET=CLIENT_SECRET)
    else:
        env["DATABRICKS_TOKEN"] = PAT
    if args[0] == "setup":  # the clients' settings go beside the state, not into the repo
        args = (*args, "--env-file", str(state.parent / ".env"))
    return subprocess.run(
        [sys.executable, "-m", "mlflow_app.cli", *args, "--state-file", str(state)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


def setup(
    standin: StandIn, state: Path, *extra: str, catalog: str = "ml", host: str | None = None
) -> subprocess.CompletedProcess:
    return mlflow_app(
        standin,
        state,
        "setup",
        "databricks",
        "--catalog",
        catalog,
        "--app",
        "mlflow-test",
        *extra,
        host=host,
    )


def platform(standin: StandIn) -> dict:
    return requests.get(f"{standin.url}/_standin/platform", timeout=10).json()


def changes(standin: StandIn, since: int, outside: tuple[str, ...] = ()) -> list[dict]:
    return [
        c
        for c in standin.calls()[since:]
        if c["method"] in MUTATING and not c["path"].startswith(outside)
    ]


def test_dry_run_prints_every_action_and_touches_nothing(standin: StandIn, tmp_path: Path):
    before = platform(standin)
    result = setup(standin, tmp_path / "state.json", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    for action in (
        "would create catalog ml",
        "would create schema ml.mlflow",
        "would create volume ml.mlflow.artifacts",
        "would create app mlflow-test",
        "dry run: nothing was changed",
    ):
        assert action in result.stdout
    assert changes(standin, 0) == []
    assert platform(standin) == before
    assert not (tmp_path / "state.json").exists()


def test_setup_creates_binds_and_grants_then_a_second_run_changes_nothing(
    standin: StandIn, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    first = setup(standin, state)
    assert first.returncode == 0, first.stdout + first.stderr
    after = platform(standin)
    assert "ml" in after["catalogs"] and "ml.mlflow" in after["schemas"]
    assert "ml.mlflow.artifacts" in after["volumes"]
    app = after["apps"]["mlflow-test"]
    resource = app["resources"][0]
    assert resource["name"] == "artifacts"
    assert resource["uc_securable"] == {
        "securable_full_name": "ml.mlflow.artifacts",
        "securable_type": "VOLUME",
        "permission": "WRITE_VOLUME",
    }
    sp = app["service_principal_client_id"]
    assert set(after["grants"]["schema:ml.mlflow"][sp]) >= {"USE_SCHEMA", "CREATE_MODEL"}
    assert "USE_CATALOG" in after["grants"]["catalog:ml"][sp]
    assert after["folder_acls"]["/Shared/mlflow-test"][sp] == "CAN_MANAGE"

    calls_before = len(standin.calls())
    second = setup(standin, state)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "catalog ml exists" in second.stdout and "found app mlflow-test" in second.stdout
    # Only the volume probe writes (and deletes) a file; nothing else changes.
    assert changes(standin, calls_before, outside=("/api/2.0/fs/",)) == []
    assert platform(standin) == after


# step -> (path prefix, method) of the call that step makes to change the workspace
FAILURE_POINTS = {
    "catalog": ("/api/2.1/unity-catalog/catalogs", "POST"),
    "schema": ("/api/2.1/unity-catalog/schemas", "POST"),
    "volume": ("/api/2.1/unity-catalog/volumes", "POST"),
    "volume_access": ("/api/2.0/fs/files/Volumes/", "PUT"),
    "app": ("/api/2.0/apps", "POST"),
    "app_grants": ("/api/2.1/unity-catalog/permissions/", "PATCH"),
    "experiment_folder": ("/api/2.0/permissions/directories/", "PATCH"),
}
NAMED_GRANTS = {
    "catalog": "CREATE CATALOG on the metastore",
    "schema": "CREATE SCHEMA on catalog",
    "volume": "CREATE VOLUME on schema",
    "volume_access": "WRITE VOLUME on volume",
    "app": "permission to create apps",
    "app_grants": "MANAGE on catalog",
    "experiment_folder": "CAN MANAGE on /Shared/mlflow-test",
}


@pytest.mark.parametrize("step", list(FAILURE_POINTS))
def test_a_refusal_at_each_step_names_the_grant_and_resume_finishes(
    standin: StandIn, tmp_path: Path, step: str
) -> None:
    state = tmp_path / "state.json"
    prefix, method = FAILURE_POINTS[step]
    standin.control("faults", prefix=prefix, method=method, status=403, times=1)
    failed = setup(standin, state, catalog=f"c{step.replace('_', '')}")
    assert failed.returncode == 1
    assert f"[FAILED]  {step}: refused for {CALLER}" in failed.stdout
    assert NAMED_GRANTS[step] in failed.stdout
    assert "mlflow-app setup databricks --resume" in failed.stdout
    if step != "catalog":  # something was created: the output says how to remove it
        assert "to undo: databricks catalogs delete" in failed.stdout
    status = mlflow_app(standin, state, "setup", "databricks", "--status")
    assert f"FAILED   {step}" in status.stdout

    refused = setup(standin, state, catalog=f"c{step.replace('_', '')}")
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = mlflow_app(standin, state, "setup", "databricks", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"[ok]      {step}" in resumed.stdout
    app = platform(standin)["apps"]["mlflow-test"]
    assert app["resources"][0]["uc_securable"]["securable_full_name"].startswith("c")


def test_a_refused_upload_is_one_line_not_a_traceback(standin: StandIn, tmp_path: Path):
    state = tmp_path / "state.json"
    assert setup(standin, state).returncode == 0
    standin.control("deny", principal=CLIENT_ID, prefix="/api/2.0/workspace/")
    result = mlflow_app(standin, state, "deploy", oauth=True)
    assert result.returncode == 1
    assert "mlflow-app: deploy failed: PermissionDenied:" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_workspace_is_named(standin: StandIn, tmp_path: Path) -> None:
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = setup(standin, tmp_path / "state.json", host=host)
    assert result.returncode == 1
    assert f"could not reach the workspace at {host}" in result.stdout


def test_without_a_terminal_missing_choices_are_named_with_what_exists(standin, tmp_path):
    result = mlflow_app(standin, tmp_path / "state.json", "setup", "databricks")
    assert result.returncode == 2
    assert "--catalog is required; catalogs you can use: main" in result.stderr


def test_binding_the_volume_to_an_existing_app_changes_only_its_resources(standin, tmp_path):
    standin.api(
        "POST",
        "/api/2.0/apps",
        json={
            "name": "mlflow-test",
            "description": "the team's tracking server",
            "user_api_scopes": ["sql"],
        },
    ).raise_for_status()
    result = setup(standin, tmp_path / "state.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bound the volume to app mlflow-test" in result.stdout
    app = platform(standin)["apps"]["mlflow-test"]
    assert app["description"] == "the team's tracking server"
    assert app["user_api_scopes"] == ["sql"]
    assert app["resources"][0]["uc_securable"]["securable_full_name"] == "ml.mlflow.artifacts"
    assert "/api/2.0/apps/mlflow-test/update" in [c["path"] for c in standin.calls()]


def test_reset_delete_removes_what_setup_created(standin: StandIn, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert setup(standin, state).returncode == 0
    unconfirmed = mlflow_app(standin, state, "setup", "databricks", "--reset", "--delete")
    assert unconfirmed.returncode == 2
    assert "--delete removes app mlflow-test, volume ml.mlflow.artifacts" in unconfirmed.stderr
    assert "mlflow-test" in platform(standin)["apps"]

    deleted = mlflow_app(standin, state, "setup", "databricks", "--reset", "--delete", "--yes")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    after = platform(standin)
    assert "mlflow-test" not in after["apps"]
    assert "ml.mlflow.artifacts" not in after["volumes"]
    assert "ml" not in after["catalogs"] and "ml.mlflow" not in after["schemas"]
    assert not state.exists()


def test_without_any_credentials_one_line_says_how_to_sign_in(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_"))}
    env["HOME"] = str(tmp_path)  # no ~/.databrickscfg
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_app.cli", "setup", "databricks", "--catalog", "ml"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no Databricks credentials found" in result.stderr
    assert "databricks auth login --host" in result.stderr
