"""mlflow_app/flask_or_fastapi.py: Flask answers what it has a rule for; MLflow's FastAPI app
answers the rest, through a2wsgi; each request is labelled with its route template."""

from __future__ import annotations

from flask import Flask
from werkzeug.test import Client

from mlflow_app.flask_or_fastapi import FlaskOrFastAPI
from mlflow_app.wsgi_types import ROUTE_KEY, UNMATCHED, WSGIApp


def routed() -> tuple[WSGIApp, list[str]]:
    flask_app = Flask("test")

    @flask_app.route("/api/2.0/mlflow/experiments/get")
    def get_experiment() -> dict:
        return {"from": "flask"}

    app = FlaskOrFastAPI(flask_app)
    seen: list[str] = []

    def labelled(environ, start_response):
        answer = app(environ, start_response)
        seen.append(environ[ROUTE_KEY])
        return answer

    return labelled, seen


def test_a_flask_route_is_answered_by_flask_with_its_rule_as_the_label() -> None:
    app, seen = routed()
    answer = Client(app).get("/api/2.0/mlflow/experiments/get?experiment_id=1")
    assert answer.status_code == 200 and answer.json == {"from": "flask"}
    assert seen == ["/api/2.0/mlflow/experiments/get"]


def test_a_fastapi_only_route_reaches_mlflows_fastapi_router() -> None:
    app, seen = routed()
    answer = Client(app).post(
        "/v1/traces", data=b"not protobuf", headers={"Content-Type": "application/x-protobuf"}
    )
    # MLflow's OTLP router parsed and refused the body: FastAPI answered, not a Flask 404.
    assert answer.status_code in (400, 422), answer.status_code
    assert seen == ["/v1/traces"]


def test_an_unknown_path_is_labelled_unmatched_not_by_its_raw_path() -> None:
    app, seen = routed()
    Client(app).get("/api/2.0/mlflow/no-such-route/12345")
    assert seen == [UNMATCHED]
