"""Prometheus metrics: declared once here, recorded by a WSGI middleware, exposed at /metrics.

Under gunicorn every worker writes to prometheus_client's multiprocess directory (set up by
`store_environment.apply_metrics_environment` before this module is imported) and a scrape
of any worker sums them all. Labels are bounded: a route is a URL template, never a raw path.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from mlflow_app import __version__
from mlflow_app.checks import CheckResult
from mlflow_app.config import Settings, uri_scheme
from mlflow_app.store_hooks import public_methods, subclass_store, wrap_store_builders
from mlflow_app.wsgi_types import ROUTE_KEY, UNMATCHED, StartResponse, WSGIApp, WSGIEnviron

# prometheus_client chose its mode at import (store_environment set it up); follow its choice.
_MULTIPROCESS = values.ValueClass is not values.MutexValue
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# Artifact uploads and downloads can take minutes; the buckets reach 300 s for them.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "mlflow_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "mlflow_http_request_duration_seconds",
    "Time to answer an HTTP request, body included.",
    ["method", "route"],
    buckets=_BUCKETS,
)
HTTP_IN_PROGRESS = Gauge(
    "mlflow_http_requests_in_progress",
    "HTTP requests being answered now.",
    multiprocess_mode="livesum",
)
UPSTREAM_REQUESTS = Counter(
    "mlflow_upstream_requests_total",
    "Calls to the tracking and registry stores, by outcome.",
    ["backend", "operation", "status"],
)
UPSTREAM_DURATION = Histogram(
    "mlflow_upstream_request_duration_seconds",
    "Time a store call took.",
    ["backend", "operation"],
    buckets=_BUCKETS,
)
ACCESS_DENIALS = Counter(
    "mlflow_access_denials_total",
    "Requests refused by access control, by mode and reason (never by user).",
    ["mode", "reason"],
)
FRONT_DOOR_REFUSALS = Counter(
    "mlflow_front_door_refusals_total",
    "Requests refused at the front door: a Host nobody configured, a write from another origin.",
    ["reason"],
)
READINESS = Gauge(
    "mlflow_readiness",
    "1 when the check passed at its last run, else 0.",
    ["check"],
    multiprocess_mode="livemostrecent",
)
APP_INFO = Gauge(
    "mlflow_app_info",
    "Versions and backend kinds of this service.",
    ["version", "mlflow_version", "backend", "registry", "artifacts"],
    multiprocess_mode="max",
)


def scheme_of(uri: str) -> str:
    """`postgresql+psycopg2://u:p@h/db` -> `postgresql`; `databricks-uc` stays; a path -> `file`."""
    if uri.startswith("/Volumes/"):
        return "uc-volume"
    if ":" not in uri:
        return uri.lower() if uri and "/" not in uri else "file"
    return uri_scheme(uri)


def record_app_info(settings: Settings) -> None:
    from mlflow.version import VERSION

    artifacts = (
        settings.artifacts_destination
        if settings.serve_artifacts
        else (settings.default_artifact_root)
    )
    APP_INFO.labels(
        version=__version__,
        mlflow_version=VERSION,
        backend=scheme_of(settings.backend_store_uri),
        registry=scheme_of(settings.registry_store_uri),
        artifacts=scheme_of(artifacts or "") if artifacts else "workspace",
    ).set(1)


def record_readiness(results: list[CheckResult]) -> None:
    for result in results:
        READINESS.labels(check=result.name).set(1 if result.ok else 0)


class Metrics:
    """WSGI middleware: counts and times every request; answers the exposition paths."""

    def __init__(self, app: WSGIApp, exposition_paths: Iterable[str]) -> None:
        self.app = app
        self.exposition_paths = frozenset(exposition_paths)

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.exposition_paths:
            return expose(start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        method = method if method in _METHODS else "other"
        started = time.perf_counter()
        status: list[str] = []

        def start_and_note(code: str, headers: list, exc_info: Any = None):
            status[:] = [code[:3]]
            return start_response(code, headers, exc_info)

        def finish() -> None:
            route = environ.get(ROUTE_KEY, UNMATCHED)
            # The counter goes last, so a scrape that sees it also sees the rest of the request.
            HTTP_IN_PROGRESS.dec()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(method, route, status[0] if status else "500").inc()

        HTTP_IN_PROGRESS.inc()
        try:
            body = self.app(environ, start_and_note)
        except BaseException:
            finish()
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and isinstance(body, file_wrapper):
            # Keep gunicorn's sendfile path: hook the file wrapper's close instead of wrapping.
            body.close = _then(getattr(body, "close", None), finish)
            return body
        return _BodyThenFinish(body, finish)


def _then(first: Callable[[], object] | None, then: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        try:
            if first is not None:
                first()
        finally:
            then()

    return both


class _BodyThenFinish:
    """Passes the body through and records the request when the server closes it."""

    def __init__(self, body: Iterable[bytes], finish: Callable[[], None]) -> None:
        self.body = body
        self.finish = finish

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        _then(getattr(self.body, "close", None), self.finish)()


def expose(start_response: StartResponse) -> list[bytes]:
    if _MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest()
    start_response(
        "200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(payload)))]
    )
    return [payload]


def instrument_mlflow_stores(settings: Settings) -> None:
    """Time every call to the stores MLflow's server builds for our URIs."""

    def wrap(build: Callable, uri: str) -> Callable:
        return functools.partial(_build_instrumented, build, scheme_of(uri))

    wrap_store_builders(settings, wrap)


def _build_instrumented(build: Callable, backend: str, *args: Any, **kwargs: Any) -> Any:
    return instrument_store(build(*args, **kwargs), backend)


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (gunicorn's child_exit hook)."""
    if _MULTIPROCESS:
        multiprocess.mark_process_dead(pid)


def instrument_store(store: Any, backend: str) -> Any:
    """Time every public method of a store."""
    if getattr(store, "_mlflow_app_instrumented", False):
        return store
    timed = {
        name: _timed_method(method, backend, name) for name, method in public_methods(store).items()
    }
    return subclass_store(store, {**timed, "_mlflow_app_instrumented": True})


_store_call = threading.local()


def _timed_method(method: Callable, backend: str, operation: str) -> Callable:
    """Time a store method; calls a store makes to itself are part of the outer call."""

    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if getattr(_store_call, "active", False):
            return method(*args, **kwargs)
        _store_call.active = True
        started = time.perf_counter()
        outcome = "ok"
        try:
            return method(*args, **kwargs)
        except BaseException as error:
            outcome = getattr(error, "error_code", None) or type(error).__name__
            raise
        finally:
            _store_call.active = False
            UPSTREAM_DURATION.labels(backend, operation).observe(time.perf_counter() - started)
            UPSTREAM_REQUESTS.labels(backend, operation, str(outcome)).inc()

    return timed
