"""Routes stock `mlflow server` serves only from its FastAPI wrapper are served here too.

Each request below would be Flask's HTML 404 if the route were lost; MLflow's FastAPI routers
answer it instead (with their own status and JSON).
"""

from __future__ import annotations

import pytest
import requests

from tests.service_process import Server

FASTAPI_ONLY = [
    # (method, path, body, expected status): what MLflow's own router answers
    ("POST", "/ajax-api/3.0/jobs/search", {}, 200),
    ("GET", "/ajax-api/3.0/jobs/no-such-job", None, 404),
    ("GET", "/api/3.0/mlflow/mcp-servers", None, 200),
    ("GET", "/ajax-api/3.0/mlflow/mcp-servers", None, 200),
    ("GET", "/gateway/mlflow/v1/models", None, 200),
    ("POST", "/gateway/no-such-endpoint/mlflow/invocations", {"messages": []}, 404),
    ("GET", "/ajax-api/3.0/mlflow/assistant/providers", None, 200),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), FASTAPI_ONLY)
def test_fastapi_only_route_is_served(server: Server, method, path, body, status) -> None:
    response = requests.request(method, server.url + path, json=body, timeout=30)
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")


def test_otlp_endpoint_validates_like_mlflow(server: Server) -> None:
    response = requests.post(
        f"{server.url}/v1/traces",
        data=b"not protobuf",
        timeout=30,
        headers={"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": "0"},
    )
    assert response.status_code == 400
    assert "Invalid OpenTelemetry format" in response.text


@pytest.mark.parametrize(
    "path",
    ["/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info", "/health", "/version"],
)
def test_routes_both_apps_have_are_served_by_flask(server: Server, path: str) -> None:
    assert requests.get(server.url + path, timeout=10).status_code == 200
