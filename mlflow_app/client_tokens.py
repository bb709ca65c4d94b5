"""Tokens for MLflow clients of a private mlflow-app: a plugin for MLflow's client.

Registered as MLflow's `mlflow.request_header_provider` entry point, and off until a client sets
MLFLOW_APP_CLIENT_TOKEN: `google-id-token` adds a Google ID token for the service's URL (Cloud
Run's IAM front door), `databricks` a Databricks OAuth token (the Databricks Apps proxy). Tokens
are cached and refreshed before they expire, so a run longer than a token's life keeps logging.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any
from urllib.parse import urlsplit

from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)

SETTING = "MLFLOW_APP_CLIENT_TOKEN"
AUDIENCE_SETTING = "MLFLOW_APP_CLIENT_AUDIENCE"  # default: the tracking URI's origin
KINDS = ("google-id-token", "databricks")
_lock = threading.Lock()


class ServiceTokenHeaderProvider(RequestHeaderProvider):
    """Adds `Authorization: Bearer <token>` to every MLflow REST call when enabled."""

    def in_context(self) -> bool:
        return bool(os.environ.get(SETTING))

    def request_headers(self) -> dict[str, str]:
        kind = os.environ[SETTING].strip().lower()
        if kind == "google-id-token":
            return {"Authorization": f"Bearer {google_id_token(audience())}"}
        if kind == "databricks":
            return _databricks_config().authenticate()
        raise ValueError(f"{SETTING}={kind!r} is not one of {', '.join(KINDS)}")


def audience() -> str:
    """Cloud Run checks the token's audience against the service's URL."""
    if configured := os.environ.get(AUDIENCE_SETTING):
        return configured
    import mlflow

    parts = urlsplit(mlflow.get_tracking_uri())
    return f"{parts.scheme}://{parts.netloc}"


def google_id_token(target: str) -> str:
    """A valid ID token for `target`: google-auth refreshes it a few minutes before expiry."""
    from google.auth.transport.requests import Request

    credentials = _google_credentials(target)
    with _lock:
        if not credentials.valid:
            credentials.refresh(Request())
        return credentials.token


@functools.cache
def _google_credentials(target: str) -> Any:
    # A service account key (GOOGLE_APPLICATION_CREDENTIALS), or the metadata server on GCP.
    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    return id_token.fetch_id_token_credentials(target, request=Request())


@functools.cache
def _databricks_config() -> Any:
    # Databricks unified auth (profile, OAuth M2M or the CLI's U2M cache); the SDK refreshes.
    from databricks.sdk.core import Config

    return Config()
