"""Access control through a real gunicorn: MLflow's users and permissions (basic), identity
from a trusted proxy (trusted-header), JSON 401/403 on every route, denials counted."""

from __future__ import annotations

import re

import pytest
import requests

from tests.service_process import Server

API = "/api/2.0/mlflow"
GRANT = "/api/3.0/mlflow/users/permissions/grant"
ADMIN = ("admin", "admin-Initial-pw-42")
ALICE = ("alice", "alice-pw-0123456789")
BOB = ("bob", "bob-pw-0123456789")


def call(server: Server, method: str, path: str, auth=None, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, auth=auth, timeout=60, **kwargs)


def ok(response: requests.Response) -> requests.Response:
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return response


def actions(experiment_id: str, run_id: str) -> dict[str, tuple[str, str, dict, str]]:
    """Name -> (method, path, request arguments, READ or EDIT needed) on alice's experiment."""
    artifact = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/notes.txt"
    query = (
        f'{{ mlflowGetExperiment(input: {{experimentId: "{experiment_id}"}}) '
        "{ experiment { name } } }"
    )
    return {
        "get experiment (REST)": (
            "GET",
            f"{API}/experiments/get",
            {"params": {"experiment_id": experiment_id}},
            "READ",
        ),
        "get run (UI ajax)": (
            "GET",
            "/ajax-api/2.0/mlflow/runs/get",
            {"params": {"run_id": run_id}},
            "READ",
        ),
        "UI artifact view": (
            "GET",
            "/get-artifact",
            {"params": {"run_uuid": run_id, "path": "notes.txt"}},
            "READ",
        ),
        "artifact proxy download": ("GET", artifact, {}, "READ"),
        "graphql": ("POST", "/graphql", {"json": {"query": query}}, "READ"),
        "log metric": (
            "POST",
            f"{API}/runs/log-metric",
            {"json": {"run_id": run_id, "key": "m", "value": 1, "timestamp": 1, "step": 0}},
            "EDIT",
        ),
        "artifact proxy upload": ("PUT", artifact, {"data": b"overwritten"}, "EDIT"),
    }


def allowed(response: requests.Response, action: str) -> bool:
    if action == "graphql" and response.status_code == 200:
        return response.json().get("data", {}).get("mlflowGetExperiment") is not None
    return response.status_code == 200


def assert_mlflow_denial(response: requests.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    expected = "UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED"
    assert response.json()["error_code"] == expected


def create_alice_and_bob(server: Server) -> None:
    """Users the admin creates through MLflow's user API."""
    for user, password in (ALICE, BOB):
        body = {"username": user, "password": password}
        ok(call(server, "POST", f"{API}/users/create", ADMIN, json=body))


@pytest.fixture
def basic_server(run_server) -> Server:
    return run_server(
        MLFLOW_APP_AUTH="basic",
        MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1],
        MLFLOW_APP_AUTH_DEFAULT_PERMISSION="NO_PERMISSIONS",
    )


def test_basic_permission_matrix(basic_server: Server) -> None:
    server = basic_server
    create_alice_and_bob(server)
    experiment_id = ok(
        call(server, "POST", f"{API}/experiments/create", ALICE, json={"name": "alice-exp"})
    ).json()["experiment_id"]
    run_id = ok(
        call(server, "POST", f"{API}/runs/create", ALICE, json={"experiment_id": experiment_id})
    ).json()["run"]["info"]["run_id"]
    artifact = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/notes.txt"
    ok(call(server, "PUT", artifact, ALICE, data=b"alice's notes"))
    matrix = actions(experiment_id, run_id)

    def check(who: str, auth, may_read: bool, may_edit: bool) -> None:
        for name, (method, path, kwargs, needs) in matrix.items():
            response = call(server, method, path, auth, **kwargs)
            expected = may_read if needs == "READ" else may_edit
            assert allowed(response, name) == expected, (who, name, response.status_code)
            if not expected and name != "graphql":
                assert_mlflow_denial(response, 401 if auth in (None, WRONG) else 403)

    WRONG = ("alice", "not-her-password")
    check("anonymous", None, may_read=False, may_edit=False)
    check("wrong password", WRONG, may_read=False, may_edit=False)
    check("bob, no grant", BOB, may_read=False, may_edit=False)
    grant = {"username": "bob", "resource_type": "experiment", "resource_id": experiment_id}
    ok(call(server, "POST", GRANT, ALICE, json={**grant, "permission": "READ"}))
    check("bob, READ", BOB, may_read=True, may_edit=False)
    check("alice, owner", ALICE, may_read=True, may_edit=True)
    check("admin", ADMIN, may_read=True, may_edit=True)
    # Only admins manage users; bob cannot grant himself more.
    assert_mlflow_denial(
        call(
            server,
            "POST",
            f"{API}/users/create",
            BOB,
            json={"username": "eve", "password": "x" * 12},
        ),
        403,
    )
    assert_mlflow_denial(
        call(server, "POST", GRANT, BOB, json={**grant, "permission": "MANAGE"}), 403
    )


def test_basic_registered_model_permissions(basic_server: Server) -> None:
    server = basic_server
    create_alice_and_bob(server)
    ok(call(server, "POST", f"{API}/registered-models/create", ALICE, json={"name": "churn"}))
    read = ("GET", f"{API}/registered-models/get", {"params": {"name": "churn"}})
    read_ui = ("GET", "/ajax-api/2.0/mlflow/registered-models/get", {"params": {"name": "churn"}})
    edit = (
        "PATCH",
        f"{API}/registered-models/update",
        {"json": {"name": "churn", "description": "by bob"}},
    )

    def status(auth, action) -> int:
        method, path, kwargs = action
        return call(server, method, path, auth, **kwargs).status_code

    assert [status(BOB, a) for a in (read, read_ui, edit)] == [403, 403, 403]
    grant = {"username": "bob", "resource_type": "registered_model", "resource_id": "churn"}
    ok(call(server, "POST", GRANT, ALICE, json={**grant, "permission": "READ"}))
    assert [status(BOB, a) for a in (read, read_ui, edit)] == [200, 200, 403]
    ok(call(server, "POST", GRANT.replace("grant", "revoke"), ALICE, json=grant))
    ok(call(server, "POST", GRANT, ALICE, json={**grant, "permission": "EDIT"}))
    assert status(BOB, edit) == 200
    assert [status(None, a) for a in (read, read_ui, edit)] == [401, 401, 401]


def test_no_route_bypasses_basic_auth(basic_server: Server) -> None:
    server = basic_server
    paths = [
        ("GET", "/"),
        ("GET", "/static-files/favicon.ico"),
        ("GET", "/metrics"),
        ("GET", "/api/metrics"),
        ("GET", "/ajax-api/2.0/mlflow/experiments/search"),
        ("POST", "/graphql"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/0/x"),
        ("POST", "/v1/traces"),
        ("GET", "/ajax-api/3.0/jobs/search"),
        ("GET", "/nothing-here"),
    ]
    for method, path in paths:
        response = call(server, method, path)
        assert_mlflow_denial(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Basic"), path
    assert ok(call(server, "GET", "/healthz")).json()["status"] == "ok"
    assert ok(call(server, "GET", "/static-files/favicon.ico", ADMIN)).content
    metrics = ok(call(server, "GET", "/metrics", ADMIN)).text
    assert count(metrics, "basic", "no_identity") >= 3
    assert "admin" not in re.sub(r"#.*\n", "", metrics)


def count(metrics: str, mode: str, reason: str) -> float:
    pattern = rf'mlflow_access_denials_total\{{mode="{mode}",reason="{reason}"\}} (\S+)'
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


def identity(email: str) -> dict[str, str]:
    return {"X-Forwarded-Email": email}


def test_trusted_header_maps_proxy_identities_onto_mlflow_permissions(run_server) -> None:
    server = run_server(
        MLFLOW_APP_AUTH="trusted-header",
        MLFLOW_APP_AUTH_ADMINS="ops@example.com",
        MLFLOW_APP_AUTH_DEFAULT_PERMISSION="NO_PERMISSIONS",
    )
    experiment_id = ok(
        call(
            server,
            "POST",
            f"{API}/experiments/create",
            headers=identity("alice@example.com"),
            json={"name": "alice-exp"},
        )
    ).json()["experiment_id"]
    get = {"params": {"experiment_id": experiment_id}}
    ok(call(server, "GET", f"{API}/experiments/get", headers=identity("alice@example.com"), **get))
    ok(call(server, "GET", f"{API}/experiments/get", headers=identity("ops@example.com"), **get))
    assert_mlflow_denial(
        call(server, "GET", f"{API}/experiments/get", headers=identity("bob@example.com"), **get),
        403,
    )
    assert_mlflow_denial(call(server, "GET", f"{API}/experiments/get", **get), 401)
    assert_mlflow_denial(call(server, "GET", "/static-files/favicon.ico"), 401)
    me = ok(call(server, "GET", f"{API}/users/current", headers=identity("bob@example.com")))
    assert me.json()["user"]["username"] == "bob@example.com"
    assert me.json()["user"]["is_admin"] is False


def test_identity_headers_from_an_untrusted_peer_are_refused(run_server) -> None:
    # The tests reach the server from 127.0.0.1, which this server does not trust.
    server = run_server(
        MLFLOW_APP_AUTH="trusted-header",
        MLFLOW_APP_AUTH_ADMINS="ops@example.com",
        MLFLOW_APP_TRUSTED_PROXIES="10.20.0.0/16",
    )
    for path in ("/", f"{API}/experiments/search", "/metrics", "/static-files/favicon.ico"):
        response = call(server, "GET", path, headers=identity("ops@example.com"))
        assert_mlflow_denial(response, 401)
        assert "trusted proxy" in response.json()["message"]
    assert ok(call(server, "GET", "/healthz")).json()["status"] == "ok"


def test_a_bad_access_setting_stops_startup_with_one_line(run_server) -> None:
    server = run_server(wait=False, MLFLOW_APP_AUTH="basic")
    assert server.process.wait(timeout=60) != 0
    assert "MLFLOW_AUTH_ADMIN_PASSWORD: basic access control needs" in server.log()


def test_identities_are_one_user_however_spelled_and_malformed_ones_refused(run_server) -> None:
    server = run_server(
        MLFLOW_APP_AUTH="trusted-header",
        MLFLOW_APP_AUTH_ADMINS="Ops@Example.com",
        MLFLOW_APP_AUTH_DEFAULT_PERMISSION="NO_PERMISSIONS",
    )
    experiment_id = ok(
        call(
            server,
            "POST",
            f"{API}/experiments/create",
            headers=identity("carol@example.com"),
            json={"name": "carol-exp"},
        )
    ).json()["experiment_id"]
    get = {"params": {"experiment_id": experiment_id}}
    ok(call(server, "GET", f"{API}/experiments/get", headers=identity("CAROL@Example.COM"), **get))
    for malformed in ("carol@example.com, ops@example.com", "x" * 5000, "a b@example.com"):
        response = call(server, "GET", f"{API}/experiments/search", headers=identity(malformed))
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    admin = identity("ops@example.com")
    users = ok(call(server, "GET", f"{API}/users/list", headers=admin)).json()["users"]
    names = sorted(u["username"] for u in users)
    assert names == ["carol@example.com", "ops@example.com"]


def test_only_admins_list_users(basic_server: Server) -> None:
    create_alice_and_bob(basic_server)
    response = call(basic_server, "GET", f"{API}/users/list", auth=ALICE)
    assert response.status_code == 403
    assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert "alice" in str(ok(call(basic_server, "GET", f"{API}/users/list", auth=ADMIN)).json())


def test_recreating_a_user_reveals_no_sql_or_password_hash(basic_server: Server) -> None:
    create_alice_and_bob(basic_server)
    response = call(
        basic_server,
        "POST",
        f"{API}/users/create",
        auth=ADMIN,
        json={"username": BOB[0], "password": "another-pw-0123456789"},
    )
    assert 400 <= response.status_code < 500
    assert "already exists" in response.json()["message"]
    for leak in ("INSERT", "[SQL", "pbkdf2", "scrypt", "parameters", "Traceback"):
        assert leak not in response.text, response.text
