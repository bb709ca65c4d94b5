"""databricks-apps access control against the stand-in: identity from the Apps proxy's
headers, trusted only from the platform's network."""

from __future__ import annotations

import requests

from tests.contract.standin_handle import USER_TOKENS, StandIn

API = "/api/2.0/mlflow"
ALICE_TOKEN, BOB_TOKEN = USER_TOKENS


def proxied(email: str, token: str | None = None) -> dict[str, str]:
    """The headers the Databricks Apps proxy adds for a signed-in user."""
    headers = {"X-Forwarded-Email": email, "X-Forwarded-User": email, "X-Real-Ip": "10.1.2.3"}
    if token:
        headers["X-Forwarded-Access-Token"] = token
    return headers


def search(server, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{server.url}{API}/experiments/search",
        json={"max_results": 5},
        headers=headers,
        timeout=60,
    )


def test_requests_without_the_proxy_identity_are_refused(run_server, standin: StandIn):
    server = run_server(**standin.service_settings(MLFLOW_APP_AUTH="databricks-apps"))
    refused = search(server, {})
    assert refused.status_code == 401
    assert refused.json()["error_code"] == "UNAUTHENTICATED"
    assert search(server, proxied("alice@example.com")).status_code == 200
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    metrics = requests.get(
        f"{server.url}/api/metrics", headers=proxied("alice@example.com"), timeout=10
    ).text
    assert 'mlflow_access_denials_total{mode="databricks-apps",reason="no_identity"} 1.0' in metrics
    assert "alice@example.com" not in metrics


def test_identity_headers_from_outside_the_platform_network_are_refused(run_server, standin):
    server = run_server(
        **standin.service_settings(
            MLFLOW_APP_AUTH="databricks-apps", MLFLOW_APP_TRUSTED_PROXIES="10.0.0.0/8"
        )
    )
    refused = search(server, proxied("alice@example.com", ALICE_TOKEN))
    assert refused.status_code == 401
    assert "trusted proxy" in refused.json()["message"]
