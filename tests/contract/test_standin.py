"""The stand-in rejects what Databricks rejects, so contract tests can trust its answers."""

from __future__ import annotations

import requests

from tests.contract.standin_handle import CLIENT_ID, CLIENT_SECRET, StandIn


def token(standin: StandIn, secret: str = CLIENT_SECRET) -> requests.Response:
    return requests.post(
        f"{standin.url}/oidc/v1/token",
        auth=(CLIENT_ID, secret),
        timeout=10,
        data={"grant_type": "client_credentials", "scope": "all-apis"},
    )


def test_missing_wrong_and_expired_tokens_are_refused(standin: StandIn) -> None:
    me = f"{standin.url}/api/2.0/preview/scim/v2/Me"
    assert requests.get(me, timeout=10).status_code == 401
    assert requests.get(me, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 403
    assert token(standin, "wrong").status_code == 401
    access = token(standin).json()["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    assert requests.get(me, headers=headers, timeout=10).json()["userName"] == CLIENT_ID
    standin.control("expire-tokens")
    expired = requests.get(me, headers=headers, timeout=10)
    assert expired.status_code == 403
    assert "expired" in expired.json()["message"]


def test_injected_429_carries_retry_after(standin: StandIn) -> None:
    standin.control("faults", prefix="/api/2.0/mlflow/", status=429, times=1, retry_after=9)
    limited = standin.api("POST", "/api/2.0/mlflow/experiments/search", json={"max_results": 5})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "9")
    assert (
        standin.api(
            "POST", "/api/2.0/mlflow/experiments/search", json={"max_results": 5}
        ).status_code
        == 200
    )


def test_unity_catalog_names_must_have_three_levels(standin: StandIn) -> None:
    path = "/api/2.0/mlflow/unity-catalog/registered-models/create"
    assert standin.api("POST", path, json={"name": "flat"}).status_code == 400
    assert standin.api("POST", path, json={"name": "main.mlflow.model"}).status_code == 200


def test_files_outside_a_volume_are_not_found(standin: StandIn) -> None:
    assert (
        standin.api("PUT", "/api/2.0/fs/files/Volumes/main/other/v/x.txt", data=b"x").status_code
        == 404
    )
    assert (
        standin.api(
            "PUT", "/api/2.0/fs/files/Volumes/main/mlflow/artifacts/x.txt", data=b"x"
        ).status_code
        == 204
    )


def test_the_platform_refuses_requirements_it_would_resolve_to_untested_versions() -> None:
    """Apps' pip keeps its pre-installed gunicorn 23 when a range allows it; the stand-in runs
    this machine's packages, so it refuses that instead of hiding the difference."""
    from importlib import metadata

    from tests.contract.standin_apps import requirements_problem

    gunicorn = metadata.version("gunicorn")
    assert requirements_problem(f"gunicorn=={gunicorn}\n") is None
    kept = requirements_problem("gunicorn>=23\n")
    assert kept is not None and "keeps the pre-installed gunicorn 23.0.0" in kept
    unlisted = requirements_problem(f"mlflow=={metadata.version('mlflow')}\n")
    assert unlisted is not None and "not in requirements.txt, so pip keeps" in unlisted


def test_a_user_token_from_the_apps_proxy_carries_only_the_apps_scopes(standin: StandIn) -> None:
    token = standin.control("mint-token", principal="alice@example.com", scopes=["files.files"])
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    outside = requests.post(
        f"{standin.url}/api/2.0/mlflow/experiments/search",
        json={"max_results": 5},
        headers=headers,
        timeout=10,
    )
    assert outside.status_code == 403
    assert "does not have required scopes" in outside.json()["message"]
    inside = requests.get(
        f"{standin.url}/api/2.0/fs/directories/Volumes/main/mlflow/artifacts",
        headers=headers,
        timeout=10,
    )
    assert inside.status_code == 200


def test_the_apps_proxy_forwards_a_token_with_the_apps_scopes_and_no_email_for_principals():
    import threading

    from tests.contract.standin_apps import AppsProxy, Caller

    minted: list[tuple[str, list[str]]] = []
    proxy = AppsProxy(
        apps={},
        runtime=None,
        lock=threading.Lock(),
        token_principal=lambda token: None,
        is_personal_access_token=lambda token: False,
        mint_token=lambda principal, scopes: minted.append((principal, scopes)) or "scoped",
        users=set(),
    )
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    request = Request(
        EnvironBuilder(base_url="https://x-7000000001.aws.databricksapps.com").get_environ()
    )
    app = {"name": "x", "user_api_scopes": ["sql"]}
    user = proxy.forwarded_headers(request, app, Caller("alice@example.com", True))
    principal = proxy.forwarded_headers(request, {"name": "x"}, Caller("sp-id", False))
    assert user["X-Forwarded-Email"] == "alice@example.com"
    assert user["X-Forwarded-Access-Token"] == "scoped" and minted == [
        ("alice@example.com", ["sql"])
    ]
    assert user["Host"] != request.host and user["X-Forwarded-Host"] == request.host
    assert user["X-Forwarded-Proto"] == "https"
    assert "X-Forwarded-Email" not in principal and "X-Forwarded-Access-Token" not in principal
    assert principal["X-Forwarded-Preferred-Username"] == "sp-id"


def test_the_workspace_takes_absolute_names_in_folders_the_caller_manages(standin: StandIn):
    create = "/api/2.0/mlflow/experiments/create"
    bare = standin.api("POST", create, json={"name": "bare"})
    assert bare.status_code == 400
    assert "must be an absolute path within the Databricks workspace" in bare.json()["message"]
    lookup = standin.api(
        "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "bare"}
    )
    assert lookup.status_code == 404
    zero = standin.api("GET", "/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"})
    assert zero.status_code == 404 and zero.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    missing = standin.api("POST", create, json={"name": "/Shared/nowhere/x"})
    assert missing.status_code == 404 and "/Shared/nowhere does not exist" in missing.text
    foreign = standin.api("POST", create, json={"name": "/Users/someone@example.com/x"})
    assert foreign.status_code == 403 and foreign.json()["error_code"] == "PERMISSION_DENIED"
    assert standin.api("POST", create, json={"name": "/Shared/x"}).ok
    listed = standin.api("POST", "/api/2.0/mlflow/experiments/search", json={"max_results": 50})
    assert [e["name"] for e in listed.json()["experiments"]] == ["/Shared/x"]
