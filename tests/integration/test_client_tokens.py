"""The MLflow client of a private service (Cloud Run's IAM front door) keeps logging across
token lifetimes: mlflow_app.client_tokens adds a Google ID token and refreshes it.

Stand-ins built from Google's documented flows: a token endpoint that takes a service
account's signed JWT assertion and answers an ID token for its `target_audience`, and a front
door that, like Cloud Run's, refuses a request whose ID token is missing, expired, for another
audience or not signed by the issuer, and forwards the rest to the real service.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.service_process import free_port

TOKEN_TTL = 4  # seconds: several tokens expire during one test
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


def _key_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def _serve(app) -> str:
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}"


@dataclass
class Google:
    """The token endpoint and the issuer's key; counts the ID tokens it minted."""

    account_private: bytes
    account_public: bytes
    issuer_private: bytes
    issuer_public: bytes
    minted: int = 0
    url: str = ""

    def __call__(self, environ, start_response):
        from google.auth import crypt, jwt

        request = Request(environ)
        try:
            # google-auth signs for Google's endpoint even when the key file names another.
            claims = jwt.decode(
                request.form["assertion"], certs=self.account_public, audience=GOOGLE_TOKEN_URI
            )
        except (KeyError, ValueError) as error:
            return Response(json.dumps({"error": str(error)}), 400)(environ, start_response)
        now = int(time.time())
        token = jwt.encode(
            crypt.RSASigner.from_string(self.issuer_private),
            {
                "iss": "https://accounts.google.com",
                "aud": claims["target_audience"],
                "sub": claims["iss"],
                "iat": now,
                "exp": now + TOKEN_TTL,
            },
        ).decode()
        self.minted += 1
        return Response(json.dumps({"id_token": token}), mimetype="application/json")(
            environ, start_response
        )


@dataclass
class FrontDoor:
    """Cloud Run's IAM check in front of the service: a valid ID token for its URL, or 401."""

    google: Google
    upstream: str
    audience: str = ""
    accepted: int = 0
    refused: list[str] = field(default_factory=list)

    def __call__(self, environ, start_response):
        from google.auth import jwt

        request = Request(environ)
        header = request.headers.get("Authorization", "")
        try:
            jwt.decode(
                header.removeprefix("Bearer "),
                certs=self.google.issuer_public,
                audience=self.audience,
                clock_skew_in_seconds=0,
            )
        except ValueError as error:
            self.refused.append(str(error))
            return Response("<h1>401 Unauthorized</h1>", 401, mimetype="text/html")(
                environ, start_response
            )
        self.accepted += 1
        answer = requests.request(
            request.method,
            self.upstream + request.full_path.rstrip("?"),
            data=request.get_data(),
            headers={
                k: v for k, v in request.headers if k.lower() not in ("host", "authorization")
            },
            timeout=60,
        )
        excluded = ("content-encoding", "transfer-encoding", "connection", "content-length")
        headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in excluded]
        return Response(answer.content, answer.status_code, headers)(environ, start_response)


@pytest.fixture
def private_service(run_server, tmp_path: Path, monkeypatch) -> Iterator[FrontDoor]:
    account_private, account_public = _key_pair()
    issuer_private, issuer_public = _key_pair()
    google = Google(account_private, account_public, issuer_private, issuer_public)
    google.url = _serve(google)
    door = FrontDoor(google, run_server().url)
    door.audience = _serve(door)
    key_file = tmp_path / "service-account.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": "ci@project.iam.gserviceaccount.com",
                "private_key": account_private.decode(),
                "private_key_id": "k1",
                "token_uri": f"{google.url}/token",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    # Set the process's tracking URI, as a training script does: earlier tests in this process
    # may have set it, and the token's audience is derived from it.
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(door.audience)
    # google-auth refreshes 3 min 45 s before expiry; scaled to these 4-second tokens.
    monkeypatch.setattr("google.auth._helpers.REFRESH_THRESHOLD", datetime.timedelta(seconds=1))
    from mlflow_app import client_tokens

    client_tokens._google_credentials.cache_clear()
    yield door
    mlflow.set_tracking_uri(previous)


def test_the_provider_is_registered_with_mlflows_client() -> None:
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    names = [type(p).__name__ for p in _request_header_provider_registry]
    assert "ServiceTokenHeaderProvider" in names, "pip install -e . registers the entry point"


def test_without_the_provider_the_private_service_refuses_the_client(private_service):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        MlflowClient().create_experiment("refused")
    assert private_service.accepted == 0 and private_service.refused


def test_a_run_longer_than_a_token_keeps_logging(private_service, monkeypatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_APP_CLIENT_TOKEN", "google-id-token")
    client = MlflowClient()
    run = client.create_run(client.create_experiment("long-run"))
    steps = 0
    started = time.monotonic()
    while time.monotonic() - started < 3 * TOKEN_TTL:  # three token lifetimes
        client.log_metric(run.info.run_id, "loss", 1.0 / (steps + 1), step=steps)
        steps += 1
        time.sleep(0.25)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(steps))
    assert private_service.refused == []
    # Refreshed as tokens expired, and reused while they were valid.
    assert 3 <= private_service.google.minted < steps
