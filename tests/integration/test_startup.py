"""Startup: a wrong setting, an unusable port or a failing backend stops with one clear answer."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import requests

from tests.service_process import (
    REPO,
    free_port,
    run_to_exit,
    service_env,
    start_gunicorn,
    stop,
)

SECRET = "s3cret-Pa55word"


def dead_postgres_uri() -> str:
    return f"postgresql://mlflow:{SECRET}@127.0.0.1:{free_port()}/mlflow"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("MLFLOW_WORKERS", "lots"),
        ("MLFLOW_BACKEND_STORE_URI", "postgres://u:pw@db/mlflow"),
        ("MLFLOW_TRACKING_URI", "http://mlflow.example.com"),
        ("PORT", "99999"),
        ("MLFLOW_STATIC_PREFIX", "mlflow/"),
    ],
)
def test_a_wrong_setting_stops_startup_with_one_line(tmp_path, setting: str, value: str):
    code, output = run_to_exit(tmp_path, **{setting: value})
    lines = [line for line in output.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1, output
    assert lines[0].startswith(f"mlflow-app: {setting}: ")
    assert "pw@" not in lines[0]


# Without CAP_NET_BIND_SERVICE even root is refused ports below 1024, as a normal user is.
NO_LOW_PORTS = ("setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service")


@pytest.mark.skipif(
    shutil.which("setpriv") is None,
    reason="setpriv (util-linux) is needed to drop the port capability",
)
def test_privileged_port_without_rights_says_to_set_port(tmp_path):
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        if int(f.read()) <= 80:
            pytest.skip("this kernel lets any user bind port 80, so there is no error to show")
    env = service_env(tmp_path, 80, PORT="", MLFLOW_APP_HOST="127.0.0.1")
    log_path = tmp_path / "startup.log"
    process = start_gunicorn(env, log_path, wrapper=NO_LOW_PORTS)
    try:
        code = process.wait(timeout=120)
    finally:
        stop(process)
    output = log_path.read_text()
    assert code != 0
    assert "mlflow-app: PORT: port 80 needs root privileges" in output
    assert "set PORT to 1024 or above" in output
    assert "Traceback" not in output


def test_failing_backend_stops_startup_with_a_table_and_no_secret(tmp_path):
    code, output = run_to_exit(
        tmp_path, MLFLOW_BACKEND_STORE_URI=dead_postgres_uri(), MLFLOW_APP_CHECK_TIMEOUT_SECONDS="5"
    )
    assert code != 0
    failed = re.search(r"mlflow-app: self-check failed \(([^)]*)\)", output).group(1).split(", ")
    assert {"tracking_store", "model_registry", "database_connections"} == set(failed)
    assert "MLFLOW_APP_START_DEGRADED=true" in output
    assert "check MLFLOW_BACKEND_STORE_URI" in output
    assert SECRET not in output
    assert "Traceback" not in output


def test_degraded_start_serves_readiness_503_with_reasons(tmp_path, run_server):
    server = run_server(
        MLFLOW_BACKEND_STORE_URI=dead_postgres_uri(),
        MLFLOW_APP_START_DEGRADED="true",
        MLFLOW_APP_CHECK_TIMEOUT_SECONDS="3",
    )
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    response = requests.get(f"{server.url}/readyz", timeout=30)
    report = response.json()
    assert response.status_code == 503
    assert report["status"] == "unavailable"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["tracking_store"]["status"] == "failed"
    assert checks["tracking_store"]["reason"]
    assert checks["tracking_store"]["fix"].startswith("check MLFLOW_BACKEND_STORE_URI")
    assert SECRET not in response.text
    assert SECRET not in server.log()


def test_readiness_report_is_cached_between_probes(run_server):
    server = run_server(MLFLOW_WORKERS="1", MLFLOW_APP_READINESS_CACHE_SECONDS="300")
    first = requests.get(f"{server.url}/readyz", timeout=10).json()
    second = requests.get(f"{server.url}/readyz", timeout=10).json()
    assert first["status"] == second["status"] == "ready"
    assert [c["latency_ms"] for c in first["checks"]] == [c["latency_ms"] for c in second["checks"]]


def run_check_command(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    env = service_env(tmp_path, free_port(), **overrides)
    return subprocess.run(
        [sys.executable, "-m", "mlflow_app.cli", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_command_prints_the_report(tmp_path):
    result = run_check_command(tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}
    assert rows == {"tracking_store": "ok", "model_registry": "ok", "artifact_store": "ok"}


def test_check_command_fails_on_a_dead_backend(tmp_path):
    result = run_check_command(
        tmp_path, MLFLOW_BACKEND_STORE_URI=dead_postgres_uri(), MLFLOW_APP_CHECK_TIMEOUT_SECONDS="3"
    )
    assert result.returncode == 1
    assert re.search(r"^tracking_store +FAILED", result.stdout, re.M)
    assert SECRET not in result.stdout + result.stderr


def test_platform_public_host_is_allowed_and_others_are_refused(run_server):
    # Cloud Run: the proxy forwards *.run.app. Local artifacts fail the self-check there (they
    # vanish with the instance), so this server starts degraded and is probed for liveness.
    server = run_server(K_SERVICE="mlflow", MLFLOW_APP_START_DEGRADED="true")
    url = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    public = requests.get(url, headers={"Host": "mlflow-x7.a.run.app"}, timeout=10)
    foreign = requests.get(url, headers={"Host": "attacker.example"}, timeout=10)
    probe = requests.get(f"{server.url}/healthz", headers={"Host": "10.1.2.3:8080"}, timeout=10)
    assert public.status_code == 200
    assert foreign.status_code == 403
    assert probe.status_code == 200


def test_local_data_on_cloud_run_fails_the_self_check_with_the_fix(tmp_path) -> None:
    """The embedded defaults keep runs (SQLite) and artifacts on the container's disk, which
    Cloud Run discards when it scales an instance away."""
    code, output = run_to_exit(tmp_path, K_SERVICE="mlflow", MLFLOW_WORKER="3")
    assert code != 0
    assert "artifacts would be written to the container's disk" in output
    assert "set MLFLOW_ARTIFACTS_DESTINATION=gs://" in output
    assert "the SQLite database would be written to the container's disk" in output
    assert "set MLFLOW_BACKEND_STORE_URI to a PostgreSQL or MySQL database" in output
    assert "MLFLOW_WORKER is not a setting of mlflow-app or MLflow" in output
