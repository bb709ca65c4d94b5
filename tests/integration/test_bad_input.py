"""Bad requests get MLflow's JSON error with a 4xx; nothing escapes the artifact root."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
import requests

from tests.service_process import Server

API = "/api/2.0/mlflow"


def raw_request(server: Server, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send the path exactly as written (no client-side normalisation of `..` or `//`)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body or None)
        response = connection.getresponse()
        status, payload = response.status, response.read()
        content_type = response.getheader("Content-Type", "")
    finally:
        connection.close()
    assert content_type.startswith("application/json"), (path, status, payload[:200])
    return status, payload


@pytest.fixture(scope="module")
def run_id(server: Server) -> str:
    response = requests.post(
        f"{server.url}{API}/runs/create", json={"experiment_id": "0"}, timeout=10
    )
    return response.json()["run"]["info"]["run_id"]


def assert_json_error(response: requests.Response, status: int, error_code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error_code"] == error_code


@pytest.mark.parametrize("body", [b"{bad", b"[1, 2]", b'"text"', b"null", b"\xff\xfe"])
def test_malformed_json_is_a_400(server: Server, body: bytes) -> None:
    response = requests.post(
        f"{server.url}{API}/experiments/create",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert_json_error(response, 400, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize(
    ("path", "error_code"),
    [
        (f"{API}/runs/get?run_id=0123456789abcdef0123456789abcdef", "RESOURCE_DOES_NOT_EXIST"),
        (f"{API}/experiments/get?experiment_id=987654", "RESOURCE_DOES_NOT_EXIST"),
        (f"{API}/experiments/get?experiment_id=not-a-number", "INVALID_PARAMETER_VALUE"),
        (f"{API}/registered-models/get?name=no-such-model", "RESOURCE_DOES_NOT_EXIST"),
    ],
)
def test_unknown_ids_are_json_4xx(server: Server, path: str, error_code: str) -> None:
    response = requests.get(server.url + path, timeout=10)
    assert 400 <= response.status_code < 500
    assert_json_error(response, response.status_code, error_code)


def test_unknown_api_route_is_a_json_404(server: Server) -> None:
    assert_json_error(
        requests.get(f"{server.url}{API}/no-such-thing", timeout=10), 404, "ENDPOINT_NOT_FOUND"
    )


def test_oversized_param_key_is_rejected(server: Server, run_id: str) -> None:
    response = requests.post(
        f"{server.url}{API}/runs/log-parameter",
        json={"run_id": run_id, "key": "k" * 1000, "value": "v"},
        timeout=10,
    )
    assert_json_error(response, 400, "INVALID_PARAMETER_VALUE")


def test_oversized_param_value_is_truncated_as_mlflow_documents(
    server: Server, run_id: str
) -> None:
    response = requests.post(
        f"{server.url}{API}/runs/log-parameter",
        json={"run_id": run_id, "key": "long", "value": "v" * 9000},
        timeout=10,
    )
    assert response.status_code == 200
    params = requests.get(
        f"{server.url}{API}/runs/get", params={"run_id": run_id}, timeout=10
    ).json()["run"]["data"]["params"]
    assert {p["key"]: len(p["value"]) for p in params}["long"] == 6000


def test_oversized_batch_is_rejected(server: Server, run_id: str) -> None:
    metrics = [{"key": f"m{i}", "value": 1.0, "timestamp": 0, "step": 0} for i in range(1001)]
    response = requests.post(
        f"{server.url}{API}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}, timeout=30
    )
    assert_json_error(response, 400, "INVALID_PARAMETER_VALUE")


ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
TRAVERSALS = [
    f"{ARTIFACTS}/../../../../etc/passwd",
    f"{ARTIFACTS}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    f"{ARTIFACTS}/..%2f..%2f..%2fetc/passwd",
    f"{ARTIFACTS}/%2fetc%2fpasswd",
    f"{ARTIFACTS}//etc/passwd",
    f"{ARTIFACTS}?path=../../..",
    f"{ARTIFACTS}?path=/etc",
    f"{ARTIFACTS}?path=%2e%2e%2f%2e%2e",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_artifact_download_cannot_leave_the_root(server: Server, path: str) -> None:
    status, body = raw_request(server, "GET", path)
    assert 400 <= status < 500, (status, body[:200])
    assert b"root:" not in body


@pytest.mark.parametrize(
    "path",
    [
        f"{ARTIFACTS}/../../escape-a.txt",
        f"{ARTIFACTS}/%2e%2e/%2e%2e/escape-b.txt",
        f"{ARTIFACTS}/..%2f..%2fescape-c.txt",
    ],
)
def test_artifact_upload_cannot_leave_the_root(server: Server, path: str) -> None:
    status, _ = raw_request(server, "PUT", path, b"payload")
    assert 400 <= status < 500
    assert list(server.data_dir.parent.rglob("escape-*")) == []


@pytest.mark.parametrize("method", ["PUT", "GET"])
@pytest.mark.parametrize(
    "path", [f"{ARTIFACTS}/%2ftmp%2fescape-d.txt", f"{ARTIFACTS}//tmp/escape-d.txt"]
)
def test_absolute_artifact_paths_are_a_json_400_as_in_stock(
    server: Server, method: str, path: str
) -> None:
    status, body = raw_request(server, method, path, b"payload" if method == "PUT" else b"")
    assert status == 400, body
    assert json.loads(body)["error_code"] == "INVALID_PARAMETER_VALUE"
    assert not Path("/tmp/escape-d.txt").exists()
    assert list(server.data_dir.parent.rglob("escape-d.txt")) == []


def test_a_double_slash_in_an_api_path_is_a_json_404_not_a_redirect(server: Server) -> None:
    status, body = raw_request(server, "GET", f"{API}//experiments/search?max_results=1")
    assert status == 404
    assert json.loads(body)["error_code"] == "ENDPOINT_NOT_FOUND"


def test_a_wrong_method_says_method_not_allowed(server: Server) -> None:
    response = requests.delete(f"{server.url}{API}/experiments/search", timeout=10)
    assert_json_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["Allow"]


def test_deeply_nested_json_is_a_400(server: Server) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = requests.post(
        f"{server.url}{API}/experiments/create",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert_json_error(response, 400, "INVALID_PARAMETER_VALUE")


def test_the_self_check_probe_leaves_nothing_to_list(server: Server) -> None:
    listed = requests.get(f"{server.url}{ARTIFACTS}", timeout=10).json()
    names = [f["path"] for f in listed.get("files", [])]
    assert not [n for n in names if n.startswith(".mlflow-app-probe")], names


@pytest.mark.parametrize("path", ["../../../../etc/passwd", "/etc/passwd", "%2e%2e/x"])
def test_run_artifact_routes_reject_traversal(server: Server, run_id: str, path: str) -> None:
    for route in ("/get-artifact", f"{API}/artifacts/list"):
        response = requests.get(
            server.url + route,
            timeout=10,
            params={"run_id": run_id, "run_uuid": run_id, "path": path},
        )
        assert 400 <= response.status_code < 500, (route, response.text)
        assert "root:" not in response.text
