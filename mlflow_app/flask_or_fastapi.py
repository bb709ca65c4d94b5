"""Routing between MLflow's Flask app and the routes stock `mlflow server` serves only from its
FastAPI wrapper.

OTLP trace ingestion (`/v1/traces`, which the MLflow client uses to log spans), jobs, gateway
invocations, the assistant and the MCP-server registry live in FastAPI routers. A request that
MLflow's Flask app has a rule for goes straight to Flask; any other goes to MLflow's own FastAPI
app through a2wsgi, which serves those routers and, as under `mlflow server`, hands the rest
back to Flask. The common routes therefore pay no ASGI hop.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from mlflow_app.mlflow_internals import static_prefix_of
from mlflow_app.wsgi_types import ROUTE_KEY, UNMATCHED, StartResponse, WSGIApp, WSGIEnviron


def fastapi_route_templates() -> list[tuple[re.Pattern[str], frozenset[str], str]]:
    """(path regex, methods, URL template) of the FastAPI-only routers, mounted as
    `create_fastapi_app` mounts them."""
    from mlflow.server.assistant.api import assistant_router
    from mlflow.server.gateway_api import gateway_router
    from mlflow.server.job_api import job_api_router
    from mlflow.server.mcp_server_api import get_mcp_server_api_route_prefixes, mcp_server_router
    from mlflow.server.otel_api import otel_router
    from starlette.routing import compile_path

    static_prefix = static_prefix_of("/").rstrip("/")
    routers = (otel_router, job_api_router, gateway_router, assistant_router)
    mounted = [(static_prefix, router) for router in routers]
    mounted += [(prefix, mcp_server_router) for prefix in get_mcp_server_api_route_prefixes()]
    templates = []
    for prefix, router in mounted:
        for route in router.routes:
            template = prefix + getattr(route, "path", "")
            methods = frozenset(getattr(route, "methods", None) or ())
            templates.append((compile_path(template)[0], methods, template))
    return templates


_ROUTE_CACHE_SIZE = 4096


class FlaskOrFastAPI:
    """Dispatch to Flask when it has a rule for the request, else to MLflow's FastAPI app."""

    def __init__(self, flask_app: Flask) -> None:
        from mlflow.server.fastapi_app import create_fastapi_app

        self.flask_app = flask_app
        self.asgi_app = create_fastapi_app(flask_app)
        self.asgi_templates = fastapi_route_templates()
        # (method, path) -> Flask rule or None: matching costs ~20 us and Flask matches again;
        # most requests repeat a few paths (the UI's files, the API's fixed routes).
        self._routes: dict[tuple[str, str], str | None] = {}
        self._bridge: WSGIApp | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if route := self.flask_route(environ):
            environ[ROUTE_KEY] = route
            return self.flask_app(environ, start_response)
        environ[ROUTE_KEY] = self.asgi_route(
            environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        )
        return self._asgi_bridge()(environ, start_response)

    def flask_route(self, environ: WSGIEnviron) -> str | None:
        """The URL rule Flask would dispatch this request to, or None."""
        key = (environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""))
        if key in self._routes:
            return self._routes[key]
        route = self.match_flask_route(environ)
        if len(self._routes) >= _ROUTE_CACHE_SIZE:
            self._routes.clear()  # paths with ids (artifacts) would otherwise grow it forever
        self._routes[key] = route
        return route

    def match_flask_route(self, environ: WSGIEnviron) -> str | None:
        adapter = self.flask_app.url_map.bind_to_environ(environ)
        try:
            rule, _ = adapter.match(return_rule=True)
        except RequestRedirect:
            return "(redirect)"
        except HTTPException:
            return None
        return rule.rule

    def asgi_route(self, path: str, method: str) -> str:
        """The template FastAPI would dispatch to; like FastAPI, the method must match too."""
        for pattern, methods, template in self.asgi_templates:
            if method in methods and pattern.match(path):
                return template
        return UNMATCHED

    def _asgi_bridge(self) -> WSGIApp:
        # a2wsgi starts its event-loop thread when constructed; threads do not survive
        # gunicorn's fork, so each worker builds its own bridge on first use.
        with self._lock:
            if self._bridge is None:
                from a2wsgi import ASGIMiddleware

                self._bridge = ASGIMiddleware(self.asgi_app)
            return self._bridge
