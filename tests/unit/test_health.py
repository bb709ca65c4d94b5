"""Health and readiness middleware, called as plain WSGI (no sockets)."""

from __future__ import annotations

import json
import time

from mlflow_app.checks import Check, CheckResult, _timed
from mlflow_app.config import load_settings
from mlflow_app.health import HealthEndpoints, ReadinessReport


def call(app, path: str) -> tuple[str, dict]:
    seen: dict[str, str] = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status
        return lambda data: None

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen["status"], json.loads(body) if body.startswith(b"{") else {"raw": body}


def downstream(environ, start_response):
    start_response("200 OK", [])
    return [b"mlflow"]


def test_readyz_is_503_with_the_failing_check_and_its_fix() -> None:
    settings = load_settings({})
    results = [
        CheckResult("tracking_store", True, 1.0, "fine"),
        CheckResult("artifact_store", False, 2.0, "OSError: disk full", "check X"),
    ]
    app = HealthEndpoints(downstream, settings, ReadinessReport(settings, lambda: results))
    status, body = call(app, "/readyz")
    assert status.startswith("503")
    assert body["status"] == "unavailable"
    assert body["checks"][1] == {
        "name": "artifact_store",
        "status": "failed",
        "latency_ms": 2.0,
        "reason": "OSError: disk full",
        "fix": "check X",
    }


def test_healthz_answers_without_running_checks_and_other_paths_pass_through() -> None:
    settings = load_settings({"MLFLOW_STATIC_PREFIX": "/mlflow"})
    calls = []
    app = HealthEndpoints(
        downstream, settings, ReadinessReport(settings, lambda: calls.append(1) or [])
    )
    assert call(app, "/mlflow/healthz") == ("200 OK", {"status": "ok"})
    assert call(app, "/api/2.0/mlflow/experiments/search")[1] == {"raw": b"mlflow"}
    assert calls == []


def test_readiness_runs_checks_once_per_cache_interval() -> None:
    settings = load_settings({"MLFLOW_APP_READINESS_CACHE_SECONDS": "60"})
    calls = []
    report = ReadinessReport(settings, lambda: calls.append(1) or [])
    for _ in range(5):
        report.current()
    assert calls == [1]


def test_readiness_reruns_checks_when_the_cache_is_off() -> None:
    settings = load_settings({"MLFLOW_APP_READINESS_CACHE_SECONDS": "0"})
    calls = []
    report = ReadinessReport(settings, lambda: calls.append(1) or [])
    for _ in range(3):
        report.current()
    assert calls == [1, 1, 1]


def test_a_hung_check_fails_at_the_time_limit() -> None:
    settings = load_settings({"MLFLOW_APP_CHECK_TIMEOUT_SECONDS": "0.2"})
    result = _timed(Check("tracking_store", lambda: time.sleep(5) or "", "fix it"), settings)
    assert not result.ok
    assert result.reason == "no answer within 0.2 s"
    assert result.latency_ms < 4000


def test_a_failing_check_reports_the_error_without_the_password() -> None:
    settings = load_settings({"MLFLOW_BACKEND_STORE_URI": "postgresql://u:hunter2@db/m"})

    def probe() -> str:
        raise RuntimeError("could not connect to postgresql://u:hunter2@db/m\nmore detail")

    result = _timed(Check("tracking_store", probe, "check it"), settings)
    assert result.reason == "RuntimeError: could not connect to postgresql://u:***@db/m"
    assert result.fix == "check it"


def test_a_missing_database_driver_says_which_package_to_install() -> None:
    settings = load_settings({})

    def probe() -> str:
        raise ModuleNotFoundError("No module named 'pymysql'", name="pymysql")

    result = _timed(Check("tracking_store", probe, "check the URI"), settings)
    assert result.fix == "install the client library: pip install 'pymysql'"
