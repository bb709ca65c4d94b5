"""Deployment files agree with the code: the same command everywhere, only known settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from mlflow_app.config import SETTINGS

REPO = Path(__file__).parents[2]
KNOWN = {s.name for s in SETTINGS} | {a for s in SETTINGS for a in s.aliases}


def test_dockerfile_and_app_yaml_run_the_readme_command() -> None:
    app_yaml = yaml.safe_load((REPO / "app.yaml").read_text())
    dockerfile = (REPO / "deploy" / "cloudrun" / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert cmd == app_yaml["command"] == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    for needed in ("wsgi.py", "gunicorn.conf.py", "mlflow_app", "requirements.txt"):
        assert needed in dockerfile


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
