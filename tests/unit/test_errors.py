"""JSON error answers on MLflow-style API routes (Flask's test client, no sockets)."""

from __future__ import annotations

import pytest
from flask import Flask, jsonify, request

from mlflow_app.errors import install_error_handling
from mlflow_app.request_id import RequestId


@pytest.fixture
def client():
    app = Flask("api")

    @app.post("/api/2.0/mlflow/echo")
    def echo():
        return jsonify(request.get_json(silent=True) or {})

    @app.get("/api/2.0/mlflow/boom")
    def boom():
        raise RuntimeError("secret internals")

    install_error_handling(app)
    return app.test_client()


def test_non_object_json_body_is_a_400(client) -> None:
    response = client.post("/api/2.0/mlflow/echo", data="[1]", content_type="application/json")
    assert response.status_code == 400
    assert response.json["error_code"] == "INVALID_PARAMETER_VALUE"


def test_object_body_reaches_the_handler(client) -> None:
    assert client.post("/api/2.0/mlflow/echo", json={"a": 1}).json == {"a": 1}


def test_unexpected_error_is_json_500_without_internals(client) -> None:
    response = client.get("/api/2.0/mlflow/boom", headers={"X-Request-Id": "abc123"})
    assert response.status_code == 500
    assert response.json["error_code"] == "INTERNAL_ERROR"
    assert "abc123" in response.json["message"]
    assert "secret internals" not in response.get_data(as_text=True)


def test_unknown_api_route_is_json_404_but_other_404s_stay_html(client) -> None:
    assert client.get("/api/2.0/mlflow/nope").json["error_code"] == "ENDPOINT_NOT_FOUND"
    assert client.get("/nope").content_type.startswith("text/html")


def test_request_id_is_kept_when_safe_and_replaced_when_not() -> None:
    seen = {}

    def app(environ, start_response):
        seen["id"] = environ["HTTP_X_REQUEST_ID"]
        start_response("200 OK", [("X-Request-Id", "inner")])
        return [b""]

    def start_response(status, headers, exc_info=None):
        seen["headers"] = headers

    RequestId(app)({"HTTP_X_REQUEST_ID": "req-1"}, start_response)
    assert seen["id"] == "req-1"
    assert seen["headers"] == [("X-Request-Id", "req-1")]
    RequestId(app)({"HTTP_X_REQUEST_ID": "bad id\n<script>"}, start_response)
    assert len(seen["id"]) == 32
    assert "script" not in seen["id"]
