"""MLflow routes that stock `mlflow server` serves only from its FastAPI wrapper.

OTLP trace ingestion (`/v1/traces`, which the MLflow client uses to log spans), jobs, gateway
invocations, the assistant and the MCP-server registry live in FastAPI routers. A request that
MLflow's Flask app has a rule for goes straight to Flask; any other goes to MLflow's own FastAPI
app through a2wsgi, which serves those routers and, as under `mlflow server`, hands the rest
back to Flask. The common routes therefore pay no ASGI hop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from mlflow_app.wsgi_types import StartResponse, WSGIApp, WSGIEnviron


class NativeRoutes:
    """Dispatch to Flask when it has a rule for the request, else to MLflow's FastAPI app."""

    def __init__(self, flask_app: Flask) -> None:
        from mlflow.server.fastapi_app import create_fastapi_app

        self.flask_app = flask_app
        self.asgi_app = create_fastapi_app(flask_app)
        self._bridge: WSGIApp | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if self.flask_serves(environ):
            return self.flask_app(environ, start_response)
        return self._asgi_bridge()(environ, start_response)

    def flask_serves(self, environ: WSGIEnviron) -> bool:
        adapter = self.flask_app.url_map.bind_to_environ(environ)
        try:
            adapter.match()
        except RequestRedirect:
            return True
        except HTTPException:
            return False
        return True

    def _asgi_bridge(self) -> WSGIApp:
        # a2wsgi starts its event-loop thread when constructed; threads do not survive
        # gunicorn's fork, so each worker builds its own bridge on first use.
        with self._lock:
            if self._bridge is None:
                from a2wsgi import ASGIMiddleware

                self._bridge = ASGIMiddleware(self.asgi_app)
            return self._bridge
