"""The service on a real PostgreSQL server: outage and recovery, secrets kept out of output."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.integration.postgres import PASSWORD, Postgres, create_postgres, postgres_bin, wait_until
from tests.service_process import Server, free_port

pytestmark = pytest.mark.skipif(
    postgres_bin() is None, reason="Debian postgresql is not installed (.ci/run installs it)"
)
API = "/api/2.0/mlflow"


@pytest.fixture
def postgres() -> Postgres:
    server = create_postgres(free_port())
    yield server
    server.stop()


@pytest.fixture
def service(run_server, postgres: Postgres, tmp_path) -> Server:
    secret = tmp_path / "backend-uri"
    secret.write_text(postgres.uri)
    return run_server(
        MLFLOW_BACKEND_STORE_URI_FILE=str(secret),
        MLFLOW_APP_READINESS_CACHE_SECONDS="0",
        MLFLOW_APP_CHECK_TIMEOUT_SECONDS="5",
    )


def log_step(server: Server, run_id: str, step: int) -> requests.Response:
    return requests.post(
        f"{server.url}{API}/runs/log-batch",
        timeout=30,
        json={
            "run_id": run_id,
            "metrics": [{"key": "m", "value": float(step), "timestamp": 1, "step": step}],
        },
    )


def test_outage_gives_503_and_the_service_recovers_without_restart(
    service: Server, postgres: Postgres
) -> None:
    run_id = requests.post(
        f"{service.url}{API}/runs/create", json={"experiment_id": "0"}, timeout=30
    ).json()["run"]["info"]["run_id"]
    acknowledged = [s for s in range(20) if log_step(service, run_id, s).status_code == 200]
    assert acknowledged == list(range(20))

    postgres.stop()
    during = [log_step(service, run_id, 100 + s) for s in range(5)]
    read = requests.get(f"{service.url}{API}/runs/get", params={"run_id": run_id}, timeout=30)
    ready = requests.get(f"{service.url}/readyz", timeout=30)
    for response in [*during, read]:
        assert response.status_code == 503, response.text
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert response.json()["message"]
    assert ready.status_code == 503
    assert {c["name"]: c["status"] for c in ready.json()["checks"]}["tracking_store"] == "failed"

    postgres.start()
    wait_until(lambda: requests.get(f"{service.url}/readyz", timeout=30).status_code == 200)
    for step in range(20, 30):
        assert log_step(service, run_id, step).status_code == 200
        acknowledged.append(step)

    history = requests.get(
        f"{service.url}{API}/metrics/get-history",
        timeout=30,
        params={"run_id": run_id, "metric_key": "m"},
    ).json()["metrics"]
    assert {h["step"] for h in history} >= set(acknowledged)
    outputs = [
        ready.text,
        *(r.text for r in during),
        read.text,
        requests.get(f"{service.url}/metrics", timeout=30).text,
        service.log(),
    ]
    assert not [o for o in outputs if PASSWORD in o]


def test_connections_stay_within_the_sized_pools_under_load(
    service: Server, postgres: Postgres
) -> None:
    run_id = requests.post(
        f"{service.url}{API}/runs/create", json={"experiment_id": "0"}, timeout=30
    ).json()["run"]["info"]["run_id"]
    peak = 0
    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(log_step, service, run_id, step) for step in range(320)]
        while not all(f.done() for f in futures):
            count = postgres.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'mlflow'")
            peak = max(peak, int(count))
        assert all(f.result().status_code == 200 for f in futures)
    # 2 workers x 2 stores (tracking, registry) x (4 pooled + 1 overflow)
    assert 0 < peak <= 20


def test_self_check_warns_when_replicas_cannot_fit_max_connections(run_server, postgres):
    server = run_server(MLFLOW_BACKEND_STORE_URI=postgres.uri, MLFLOW_APP_REPLICAS="50")
    report = requests.get(f"{server.url}/readyz", timeout=30)
    checks = {c["name"]: c for c in report.json()["checks"]}
    assert report.status_code == 200
    assert checks["database_connections"]["status"] == "warning"
    assert (
        "50 replicas x 2 workers x 2 pools x (4 + 1 overflow) = 1000"
        in (checks["database_connections"]["reason"])
    )
    assert "max_connections to at least 1000" in checks["database_connections"]["fix"]
    assert "database_connections  WARNING" in server.log()


def test_two_replicas_share_users_and_grants_through_one_auth_database(run_server, postgres):
    """basic access control with the auth store on PostgreSQL, as on Cloud Run or Kubernetes:
    a user and a grant made through one replica hold on the other at once, and each worker
    opens its own auth connections (none is inherited across gunicorn's fork)."""
    postgres.psql("CREATE DATABASE mlflow_auth OWNER mlflow")
    auth_uri = postgres.uri.rsplit("/", 1)[0] + "/mlflow_auth"
    admin, alice, bob = ("admin", "admin-Initial-pw-42"), ("alice", "a" * 16), ("bob", "b" * 16)
    replicas = [
        run_server(
            MLFLOW_BACKEND_STORE_URI=postgres.uri,
            MLFLOW_APP_AUTH="basic",
            MLFLOW_AUTH_ADMIN_PASSWORD=admin[1],
            MLFLOW_APP_AUTH_DATABASE_URI=auth_uri,
            MLFLOW_APP_AUTH_DEFAULT_PERMISSION="NO_PERMISSIONS",
        )
        for _ in range(2)
    ]
    first, second = (r.url for r in replicas)

    def call(url: str, method: str, path: str, auth, **kwargs) -> requests.Response:
        return requests.request(method, url + path, auth=auth, timeout=60, **kwargs)

    for user, password in (alice, bob):
        created = call(
            first,
            "POST",
            f"{API}/users/create",
            admin,
            json={"username": user, "password": password},
        )
        assert created.status_code == 200, created.text
    experiment_id = call(
        second, "POST", f"{API}/experiments/create", alice, json={"name": "shared"}
    ).json()["experiment_id"]  # alice, created on the first replica, signs in on the second
    read = {"params": {"experiment_id": experiment_id}}
    for url in (first, second):  # every worker of both replicas refuses bob
        for _ in range(4):
            got = call(url, "GET", f"{API}/experiments/get", bob, **read)
            assert got.status_code == 403, got.text
    granted = call(
        first,
        "POST",
        "/api/3.0/mlflow/users/permissions/grant",
        alice,
        json={
            "username": "bob",
            "resource_type": "experiment",
            "resource_id": experiment_id,
            "permission": "READ",
        },
    )
    assert granted.status_code == 200, granted.text
    for _ in range(4):  # at once, on every worker of the other replica
        assert call(second, "GET", f"{API}/experiments/get", bob, **read).status_code == 200
    sessions = postgres.psql(
        "SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE datname = 'mlflow_auth'"
    )
    assert int(sessions) >= 2  # each replica's workers hold their own auth connections
