"""The middleware chain: one function that wraps MLflow's Flask app for serving.

`build_app` lists the middleware outermost first; read it top to bottom for the order a
request passes through on its way to MLflow.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from flask import Flask

from mlflow_app import metrics
from mlflow_app.access import AccessControl, install_mlflow_auth, protect_fastapi_routes
from mlflow_app.config import Settings
from mlflow_app.database_outage import fail_fast_while_unreachable
from mlflow_app.databricks import reuse_host_credentials
from mlflow_app.errors import install_error_handling
from mlflow_app.experiment_folder import keep_bare_names_in_folder
from mlflow_app.flask_or_fastapi import FlaskOrFastAPI
from mlflow_app.front_door import ForwardedHeaders, HostAndOrigin
from mlflow_app.health import HealthEndpoints, ReadinessReport
from mlflow_app.request_id import RequestId
from mlflow_app.sqlite_writes import sqlite_sessions, tune_every_sqlite_connection
from mlflow_app.volume_artifacts import keep_artifacts_in_volume
from mlflow_app.wsgi_types import WSGIApp

Middleware = Callable[[WSGIApp], WSGIApp]


def build_app(settings: Settings, mlflow_app: Flask) -> WSGIApp:
    """gunicorn -> request id -> forwarded headers -> host and origin -> access -> metrics ->
    health/readiness -> MLflow (Flask, with MLflow's auth hooks when on, or FastAPI-only
    routes). Access sits outside metrics: a refused request costs no route matching; refusals
    are counted by their own counters."""
    prepare_stores(settings)
    readiness = ReadinessReport(
        settings, on_refresh=metrics.record_readiness if settings.metrics else None
    )
    chain: list[Middleware] = [
        RequestId,
        partial(ForwardedHeaders, trusted_proxies=settings.trusted_proxies),
        partial(
            HostAndOrigin,
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=settings.cors_allowed_origins,
            exempt_paths=health_paths(settings) + exposition_paths(settings),
        ),
    ]
    if settings.access.mode != "none":
        chain.append(
            partial(
                AccessControl,
                access=settings.access,
                open_paths=health_paths(settings),
                own_paths=exposition_paths(settings) if settings.metrics else (),
            )
        )
    if settings.metrics:
        chain.append(partial(metrics.Metrics, exposition_paths=exposition_paths(settings)))
    chain.append(partial(HealthEndpoints, settings=settings, readiness=readiness))
    app: WSGIApp = mlflow_routes(settings, mlflow_app)
    for middleware in reversed(chain):
        app = middleware(app)
    return app


def prepare_stores(settings: Settings) -> None:
    """Wrap the stores MLflow will build for this configuration (`store_wrappers`, in order)."""
    for wrap in store_wrappers(settings):
        wrap(settings)
    if settings.profile != "databricks":
        tune_every_sqlite_connection()
    if settings.metrics:
        metrics.record_app_info(settings)


def store_wrappers(settings: Settings) -> list[Callable[[Settings], None]]:
    """Innermost first: each wraps the store builder registered before it, so a handler's
    store call passes metrics timing (outermost: it times all the handler waits for), then
    the others bottom to top, then MLflow's store."""
    if settings.profile == "databricks":
        wrappers = [reuse_host_credentials, keep_artifacts_in_volume, keep_bare_names_in_folder]
    else:
        wrappers = [sqlite_sessions, fail_fast_while_unreachable]
    if settings.metrics:
        wrappers.append(metrics.instrument_mlflow_stores)
    return wrappers


def mlflow_routes(settings: Settings, mlflow_app: Flask) -> WSGIApp:
    """MLflow's Flask app with its auth hooks (when on) and our JSON errors, plus the routes
    only its FastAPI app serves."""
    if settings.access.uses_mlflow_auth:
        install_mlflow_auth(settings.access, mlflow_app)  # its hooks run before ours
    install_error_handling(mlflow_app, settings.static_prefix, settings.upstream_retry_seconds)
    routed = FlaskOrFastAPI(mlflow_app)
    if settings.access.uses_mlflow_auth:
        protect_fastapi_routes(routed.asgi_app)
    return routed


def health_paths(settings: Settings) -> tuple[str, ...]:
    prefix = settings.static_prefix
    paths = (settings.health_path, settings.ready_path, settings.ready_api_path)
    return tuple(prefix + path for path in paths)


def exposition_paths(settings: Settings) -> tuple[str, ...]:
    prefix = settings.static_prefix
    return prefix + settings.metrics_path, prefix + settings.metrics_api_path
