"""Liveness and readiness endpoints, answered before MLflow sees the request.

`/healthz` says the process serves. `/readyz` (and `/api/readyz`, for Databricks Apps, whose
proxy takes bearer tokens only under /api/) runs the backend checks, at most once per
cache interval per worker (probes cannot overload a backend), and answers 200 or 503 with
a JSON report.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable

from mlflow_app.checks import CheckResult, run_checks
from mlflow_app.config import Settings
from mlflow_app.wsgi_types import ROUTE_KEY, StartResponse, WSGIApp, WSGIEnviron


class ReadinessReport:
    """Backend check results, reused for `cache_seconds`; one refresh at a time."""

    def __init__(
        self,
        settings: Settings,
        run: Callable[[], list[CheckResult]] | None = None,
        on_refresh: Callable[[list[CheckResult]], None] | None = None,
    ) -> None:
        self._on_refresh = on_refresh or (lambda results: None)
        self._run = run or (lambda: run_checks(settings, write_probe=False))
        self._cache_seconds = settings.readiness_cache_seconds
        self._lock = threading.Lock()
        self._results: list[CheckResult] = []
        self._checked_at = float("-inf")

    def current(self) -> tuple[list[CheckResult], float]:
        """The results and their age in seconds."""
        with self._lock:
            if time.monotonic() - self._checked_at >= self._cache_seconds:
                self._results = self._run()
                self._on_refresh(self._results)
                self._checked_at = time.monotonic()
            return self._results, time.monotonic() - self._checked_at


class HealthEndpoints:
    """WSGI middleware answering the health and readiness paths."""

    def __init__(self, app: WSGIApp, settings: Settings, readiness: ReadinessReport) -> None:
        self.app = app
        prefix = settings.static_prefix
        self.health_path = prefix + settings.health_path
        ready = (settings.ready_path, settings.ready_api_path)
        self.ready_paths = frozenset(prefix + path for path in ready)
        self.readiness = readiness

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == self.health_path:
            environ[ROUTE_KEY] = self.health_path
            return _json(start_response, "200 OK", {"status": "ok"})
        if path in self.ready_paths:
            environ[ROUTE_KEY] = path
            results, age = self.readiness.current()
            ready = all(r.ok for r in results)
            body = {
                "status": "ready" if ready else "unavailable",
                "checked_seconds_ago": round(age, 1),
                "checks": [r.as_json() for r in results],
            }
            return _json(start_response, "200 OK" if ready else "503 Service Unavailable", body)
        return self.app(environ, start_response)


def _json(start_response: StartResponse, status: str, body: object) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [payload]
