"""Deployment files agree with the code: the same command everywhere, only known settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mlflow_app.config import SETTINGS, load_settings

REPO = Path(__file__).parents[2]
KNOWN = {s.name for s in SETTINGS} | {a for s in SETTINGS for a in s.aliases}


def test_dockerfile_and_app_yaml_run_the_readme_command() -> None:
    app_yaml = yaml.safe_load((REPO / "app.yaml").read_text())
    dockerfile = (REPO / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert cmd == app_yaml["command"] == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    for needed in ("wsgi.py", "gunicorn.conf.py", "mlflow_app", "requirements.txt"):
        assert needed in dockerfile


@pytest.mark.parametrize("injected", ["/Volumes/main/mlflow/artifacts", "main.mlflow.artifacts"])
def test_app_yaml_volume_binding_becomes_the_artifact_root(injected: str) -> None:
    """Whichever form the platform injects for the volume resource, artifacts go there."""
    app_yaml = yaml.safe_load((REPO / "app.yaml").read_text())
    env = {}
    for item in app_yaml["env"]:
        assert item["name"] in KNOWN
        env[item["name"]] = item.get("value", injected)  # valueFrom: the resource's value
    settings = load_settings({**env, "DATABRICKS_APP_NAME": "mlflow", "DATABRICKS_HOST": "x"})
    # The volume's own root is not an artifact location MLflow accepts: its mlflow directory.
    assert settings.volume_root == "dbfs:/Volumes/main/mlflow/artifacts/mlflow"
    assert settings.serve_artifacts and settings.default_artifact_root == "mlflow-artifacts:/"


def test_cloud_build_builds_the_root_dockerfile_and_deploys_that_image() -> None:
    build = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
    steps = {step["id"]: step for step in build["steps"]}
    assert steps["build"]["args"] == ["build", "-t", "${_IMAGE}", "."]
    assert steps["push"]["args"] == ["push", "${_IMAGE}"]
    deploy = steps["deploy"]["args"]
    assert deploy[:3] == ["run", "deploy", "${_SERVICE}"]
    assert deploy[deploy.index("--image") + 1] == "${_IMAGE}"
    assert build["options"]["dynamicSubstitutions"] is True  # _IMAGE refers to _REGION


def test_the_image_leaves_out_local_data_and_secrets() -> None:
    for name in (".dockerignore", ".gcloudignore"):
        ignored = (REPO / name).read_text().split()
        assert {"mlflow-data", ".env", ".mlflow-app", "tests", ".git"} <= set(ignored), name


def test_cloud_run_service_sets_only_documented_settings() -> None:
    service = yaml.safe_load((REPO / "deploy" / "cloudrun" / "service.yaml").read_text())
    container = service["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in container["env"]}
    assert names <= KNOWN, names - KNOWN
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "PASSWORD" not in json.dumps(container["env"])


def test_no_tracked_file_exceeds_the_databricks_apps_10_mb_limit() -> None:
    import subprocess

    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert files, "git ls-files listed nothing"
    too_big = [f for f in files if (REPO / f).stat().st_size > 10 * 1024 * 1024]
    assert too_big == []


def test_requirements_txt_pins_the_versions_the_tests_run() -> None:
    """CI installs with requirements.txt as a constraint, so its pins are what the tests ran;
    Databricks Apps installs exactly them."""
    from mlflow_app.pinned_requirements import render

    assert (REPO / "requirements.txt").read_text() == render(REPO), (
        "requirements.txt is stale: mlflow-app requirements --write"
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("gunicorn>=26.2,<27", "gunicorn is not pinned with =="),
        ("gunicorn==23.0.0", "gunicorn==23.0.0 is outside pyproject.toml's <27,>=26.2"),
    ],
)
def test_deploy_refuses_requirements_the_platform_would_resolve_its_own_way(
    tmp_path: Path, line: str, problem: str
) -> None:
    from mlflow_app.deploy import DeployFailed, deployable_files

    for name in ("app.yaml", "wsgi.py", "gunicorn.conf.py", "pyproject.toml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    (tmp_path / "mlflow_app").mkdir()
    pinned = (REPO / "requirements.txt").read_text().splitlines()
    (tmp_path / "requirements.txt").write_text(
        "\n".join(line if p.startswith("gunicorn==") else p for p in pinned) + "\n"
    )
    with pytest.raises(DeployFailed) as refused:
        deployable_files(tmp_path)
    assert problem in str(refused.value)
    assert "mlflow-app requirements --write" in str(refused.value)
