"""The middleware chain: one function that wraps MLflow's Flask app for serving.

Read `build_app` top to bottom for the order a request passes through, innermost first.
"""

from __future__ import annotations

from flask import Flask

from mlflow_app import metrics
from mlflow_app.access import AccessControl, install_mlflow_auth, protect_fastapi_routes
from mlflow_app.config import Settings
from mlflow_app.databricks import reuse_host_credentials
from mlflow_app.errors import install_error_handling
from mlflow_app.health import HealthEndpoints, ReadinessReport
from mlflow_app.native_routes import NativeRoutes
from mlflow_app.request_id import RequestId
from mlflow_app.volume_artifacts import keep_artifacts_in_volume
from mlflow_app.wsgi_types import WSGIApp


def build_app(settings: Settings, mlflow_app: Flask) -> WSGIApp:
    """gunicorn -> request id -> access -> metrics -> health/readiness -> MLflow (Flask, with
    MLflow's auth hooks when on, or FastAPI-only routes)."""
    if settings.profile == "databricks":
        reuse_host_credentials(settings)
        keep_artifacts_in_volume(settings)
    if settings.metrics:
        metrics.instrument_mlflow_stores(settings)
        metrics.record_app_info(settings)
    readiness = ReadinessReport(
        settings, on_refresh=metrics.record_readiness if settings.metrics else None
    )

    if settings.access.uses_mlflow_auth:
        install_mlflow_auth(settings.access, mlflow_app)  # its hooks run before ours
    install_error_handling(mlflow_app, settings.static_prefix, settings.upstream_retry_seconds)

    native = NativeRoutes(mlflow_app)
    if settings.access.uses_mlflow_auth:
        protect_fastapi_routes(native.asgi_app)
    app: WSGIApp = HealthEndpoints(native, settings, readiness)
    if settings.metrics:
        app = metrics.Metrics(app, exposition_paths(settings))
    if settings.access.mode != "none":
        app = AccessControl(
            app,
            settings.access,
            open_paths=health_paths(settings),
            own_paths=exposition_paths(settings) if settings.metrics else (),
        )
    app = RequestId(app)
    return app


def health_paths(settings: Settings) -> tuple[str, str]:
    prefix = settings.static_prefix
    return prefix + settings.health_path, prefix + settings.ready_path


def exposition_paths(settings: Settings) -> tuple[str, str]:
    prefix = settings.static_prefix
    return prefix + settings.metrics_path, prefix + settings.metrics_api_path
