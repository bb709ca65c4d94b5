"""The metrics middleware and store timing, called directly (single-process registry)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from mlflow_app.metrics import Metrics, instrument_store, scheme_of
from mlflow_app.wsgi_types import ROUTE_KEY


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def routed_app(route: str, status: str = "200 OK"):
    def app(environ, start_response):
        environ[ROUTE_KEY] = route
        start_response(status, [])
        return [b"body"]

    return app


def call(app, path: str = "/x", method: str = "GET") -> tuple[list[str], bytes]:
    seen: list[str] = []

    def start_response(status, headers, exc_info=None):
        seen.append(status)

    body = app({"PATH_INFO": path, "REQUEST_METHOD": method}, start_response)
    data = b"".join(body)
    getattr(body, "close", lambda: None)()
    return seen, data


def test_request_is_counted_under_its_route_template_when_the_body_is_closed() -> None:
    labels = {"method": "GET", "route": "/api/2.0/mlflow/runs/get", "status": "404"}
    before = value("mlflow_http_requests_total", **labels)
    app = Metrics(routed_app("/api/2.0/mlflow/runs/get", "404 NOT FOUND"), ["/metrics"])
    assert call(app) == (["404 NOT FOUND"], b"body")
    assert value("mlflow_http_requests_total", **labels) == before + 1
    assert value("mlflow_http_requests_in_progress") == 0


def test_unknown_methods_share_one_label() -> None:
    before = value("mlflow_http_requests_total", method="other", route="/r", status="200")
    call(Metrics(routed_app("/r"), []), method="BREW")
    assert value("mlflow_http_requests_total", method="other", route="/r", status="200") == (
        before + 1
    )


def test_an_app_that_raises_is_counted_as_500() -> None:
    def broken(environ, start_response):
        raise RuntimeError("boom")

    before = value("mlflow_http_requests_total", method="GET", route="(unmatched)", status="500")
    with pytest.raises(RuntimeError):
        Metrics(broken, [])({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda *a: None)
    assert (
        value("mlflow_http_requests_total", method="GET", route="(unmatched)", status="500")
        == before + 1
    )


def test_exposition_path_serves_the_metrics_without_counting_itself() -> None:
    status, body = call(Metrics(routed_app("/r"), ["/metrics"]), "/metrics")
    assert status == ["200 OK"]
    assert b"mlflow_http_requests_total" in body


class FakeStoreError(Exception):
    error_code = "RESOURCE_DOES_NOT_EXIST"


class FakeStore:
    def get_run(self, run_id: str) -> str:
        if run_id == "missing":
            raise FakeStoreError(run_id)
        return run_id

    def get_run_twice(self, run_id: str) -> list[str]:
        return [self.get_run(run_id), self.get_run(run_id)]

    @classmethod
    def kind(cls) -> str:
        return "fake"


def test_instrumented_store_keeps_its_type_and_times_each_call() -> None:
    store = instrument_store(FakeStore(), "fakedb")
    ok = {"backend": "fakedb", "operation": "get_run", "status": "ok"}
    missing = {**ok, "status": "RESOURCE_DOES_NOT_EXIST"}
    before_ok, before_missing = (
        value("mlflow_upstream_requests_total", **ok),
        value("mlflow_upstream_requests_total", **missing),
    )
    assert isinstance(store, FakeStore)
    assert store.get_run("r1") == "r1"
    with pytest.raises(FakeStoreError):
        store.get_run("missing")
    assert store.kind() == "fake"
    assert value("mlflow_upstream_requests_total", **ok) == before_ok + 1
    assert value("mlflow_upstream_requests_total", **missing) == before_missing + 1
    assert instrument_store(store, "fakedb") is store


def test_calls_a_store_makes_to_itself_count_once() -> None:
    store = instrument_store(FakeStore(), "nested")
    store.get_run_twice("r")
    assert (
        value(
            "mlflow_upstream_requests_total",
            backend="nested",
            operation="get_run_twice",
            status="ok",
        )
        == 1
    )
    assert (
        value("mlflow_upstream_requests_total", backend="nested", operation="get_run", status="ok")
        == 0
    )


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("postgresql+psycopg2://u:p@h/db", "postgresql"),
        ("sqlite:////x.db", "sqlite"),
        ("/srv/artifacts", "file"),
        ("s3://bucket/p", "s3"),
        ("/Volumes/c/s/v/x", "uc-volume"),
        ("databricks-uc", "databricks-uc"),
        ("databricks", "databricks"),
    ],
)
def test_scheme_of(uri: str, scheme: str) -> None:
    assert scheme_of(uri) == scheme


class FileWrapper:
    """Stands in for gunicorn's wsgi.file_wrapper, which it serves with sendfile."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.close = filelike.close

    def __iter__(self):
        return iter([self.filelike.read()])


def test_file_responses_keep_the_servers_file_wrapper_and_are_still_counted() -> None:
    import io

    def send_file(environ, start_response):
        environ[ROUTE_KEY] = "/static-files/<path:path>"
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"file"))

    labels = {"method": "GET", "route": "/static-files/<path:path>", "status": "200"}
    before = value("mlflow_http_requests_total", **labels)
    environ = {
        "PATH_INFO": "/static-files/a.js",
        "REQUEST_METHOD": "GET",
        "wsgi.file_wrapper": FileWrapper,
    }
    body = Metrics(send_file, [])(environ, lambda *a: None)
    assert isinstance(body, FileWrapper)
    assert value("mlflow_http_requests_total", **labels) == before
    body.close()
    assert body.filelike.closed
    assert value("mlflow_http_requests_total", **labels) == before + 1
