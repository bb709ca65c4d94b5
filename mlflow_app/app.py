"""The middleware chain: one function that wraps MLflow's Flask app for serving.

Read `build_app` top to bottom for the order a request passes through, outermost first.
"""

from __future__ import annotations

from flask import Flask

from mlflow_app.config import Settings
from mlflow_app.errors import install_error_handling
from mlflow_app.health import HealthEndpoints, ReadinessReport
from mlflow_app.native_routes import NativeRoutes
from mlflow_app.request_id import RequestId
from mlflow_app.wsgi_types import WSGIApp


def build_app(settings: Settings, mlflow_app: Flask) -> WSGIApp:
    """gunicorn -> request id -> health/readiness -> MLflow (Flask, or FastAPI-only routes)."""
    install_error_handling(mlflow_app, settings.static_prefix)
    app: WSGIApp = NativeRoutes(mlflow_app)
    app = HealthEndpoints(app, settings, ReadinessReport(settings))
    app = RequestId(app)
    return app
