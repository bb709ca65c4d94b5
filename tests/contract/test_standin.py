"""The stand-in rejects what Databricks rejects, so contract tests can trust its answers."""

from __future__ import annotations

import requests

from tests.contract.conftest import CLIENT_ID, CLIENT_SECRET, StandIn


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
    assert standin.api("POST", path, json={"name": "main.ml.model"}).status_code == 200


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
