"""The front door: forwarded headers only from trusted proxies, host allowlist, same-origin rule."""

from __future__ import annotations

import json
from ipaddress import ip_network

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from mlflow_app.front_door import ForwardedHeaders, HostAndOrigin, host_allowed, same_origin
from mlflow_app.metrics import FRONT_DOOR_REFUSALS

PROXY = "10.1.2.3"
STRANGER = "203.0.113.9"


def echo(environ, start_response):
    seen = {
        "scheme": environ["wsgi.url_scheme"],
        "host": environ.get("HTTP_HOST"),
        "remote": environ.get("REMOTE_ADDR"),
        "script_root": environ.get("SCRIPT_NAME", ""),
        "origin": environ.get("HTTP_ORIGIN"),
        "forwarded_host": environ.get("HTTP_X_FORWARDED_HOST"),
    }
    return Response(json.dumps(seen), mimetype="application/json")(environ, start_response)


def front_door(**guard: object) -> Client:
    options = {
        "allowed_hosts": ("mlflow.example.com", "localhost:*"),
        "allowed_origins": (),
        "exempt_paths": ("/healthz",),
        **guard,
    }
    app = HostAndOrigin(echo, **options)
    return Client(ForwardedHeaders(app, trusted_proxies=(ip_network("10.0.0.0/8"),)))


FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "mlflow.example.com",
    "X-Forwarded-For": "198.51.100.7",
    "X-Forwarded-Prefix": "/mlflow",
}


def get(client: Client, peer: str, **kwargs: object):
    return client.get("/api/2.0/mlflow/x", environ_base={"REMOTE_ADDR": peer}, **kwargs)


def test_a_trusted_proxy_tells_the_address_the_user_reached() -> None:
    response = get(front_door(), PROXY, headers={"Host": "10.1.2.4:8000", **FORWARDED})
    assert response.json == {
        "scheme": "https",
        "host": "mlflow.example.com",
        "remote": "198.51.100.7",
        "script_root": "/mlflow",
        "origin": None,
        "forwarded_host": "mlflow.example.com",
    }


def test_forwarded_headers_from_anyone_else_are_dropped() -> None:
    response = get(front_door(), STRANGER, headers={"Host": "localhost:5000", **FORWARDED})
    assert response.json["scheme"] == "http"
    assert response.json["host"] == "localhost:5000"
    assert response.json["remote"] == STRANGER
    assert response.json["forwarded_host"] is None


def test_an_untrusted_forwarded_host_cannot_pass_the_host_allowlist() -> None:
    headers = {"Host": "evil.example", "X-Forwarded-Host": "mlflow.example.com"}
    response = get(front_door(), STRANGER, headers=headers)
    assert response.status_code == 403
    assert response.json["error_code"] == "PERMISSION_DENIED"


def test_an_unconfigured_host_is_a_json_403_logged_with_the_setting(caplog) -> None:
    before = FRONT_DOOR_REFUSALS.labels("host_not_allowed")._value.get()
    response = get(front_door(), PROXY, headers={"Host": "mlflow.example.com.evil.test"})
    assert response.status_code == 403
    assert response.content_type == "application/json"
    assert "MLFLOW_SERVER_ALLOWED_HOSTS" in caplog.text
    assert "mlflow.example.com.evil.test" in caplog.text
    assert FRONT_DOOR_REFUSALS.labels("host_not_allowed")._value.get() == before + 1


def test_probes_pass_whatever_host_they_name() -> None:
    client = front_door()
    response = client.get("/healthz", headers={"Host": "10.9.8.7:8000"})
    assert response.status_code == 200


def post(client: Client, origin: str, host: str = "mlflow.example.com", **headers: str):
    return client.post(
        "/ajax-api/2.0/mlflow/runs/search",
        json={},
        headers={"Host": host, "Origin": origin, **headers},
        environ_base={"REMOTE_ADDR": PROXY},
    )


def test_a_same_origin_write_passes_without_its_origin() -> None:
    response = post(front_door(), "http://mlflow.example.com")
    assert response.status_code == 200
    assert response.json["origin"] is None  # MLflow's own guard would refuse it otherwise


def test_same_origin_behind_a_tls_proxy_uses_the_forwarded_scheme() -> None:
    client = front_door()
    assert (
        post(client, "https://mlflow.example.com", **{"X-Forwarded-Proto": "https"}).status_code
        == 200
    )
    assert post(client, "https://mlflow.example.com").status_code == 403


def test_a_cross_origin_write_is_a_json_403_counted() -> None:
    before = FRONT_DOOR_REFUSALS.labels("cross_origin")._value.get()
    response = post(front_door(), "https://other-app.databricksapps.com")
    assert response.status_code == 403
    assert response.json["error_code"] == "PERMISSION_DENIED"
    assert "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS" in response.json["message"]
    assert FRONT_DOOR_REFUSALS.labels("cross_origin")._value.get() == before + 1


@pytest.mark.parametrize("origin", ["http://localhost:3000", "null", "file://", "garbage"])
def test_localhost_and_opaque_origins_are_other_origins(origin: str) -> None:
    assert post(front_door(), origin).status_code == 403


def test_listed_origins_may_write_and_keep_their_origin_for_cors() -> None:
    client = front_door(allowed_origins=("https://notebooks.example.com", "https://*.corp.test"))
    for origin in ("https://notebooks.example.com", "https://ci.corp.test"):
        response = post(client, origin)
        assert response.status_code == 200
        assert response.json["origin"] == origin
    assert post(client, "https://evil.example").status_code == 403


def test_a_wildcard_lets_every_origin_write() -> None:
    assert post(front_door(allowed_origins=("*",)), "https://anywhere.test").status_code == 200


def test_reads_are_not_refused_for_their_origin() -> None:
    response = front_door().get(
        "/api/2.0/mlflow/x", headers={"Host": "mlflow.example.com", "Origin": "https://evil.test"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "same"),
    [
        ("https://mlflow.example.com", "https", "mlflow.example.com:443", True),
        ("HTTPS://MLflow.Example.com:443", "https", "mlflow.example.com", True),
        ("http://mlflow.example.com", "https", "mlflow.example.com", False),
        ("https://mlflow.example.com:8443", "https", "mlflow.example.com", False),
        ("https://mlflow.example.com.evil.test", "https", "mlflow.example.com", False),
    ],
)
def test_same_origin_compares_scheme_host_and_port(
    origin: str, scheme: str, host: str, same: bool
) -> None:
    assert same_origin(origin, {"wsgi.url_scheme": scheme, "HTTP_HOST": host}) is same


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("mlflow.example.com", True),
        ("MLflow.Example.com:8443", True),
        ("localhost:5000", True),
        ("localhost", False),  # the list names localhost only with a port
        ("evil.example.com", False),
        ("[::1]:5000", False),
        ("", False),
    ],
)
def test_a_listed_name_is_allowed_on_any_port(host: str, allowed: bool) -> None:
    assert host_allowed(host, ("mlflow.example.com", "localhost:*")) is allowed
