"""Error text fit to show: one line, and no credential in it.

Every message that reaches a log, a `/readyz` report or a terminal goes through these, so a
password or token in an exception (a database URI in a driver error) never leaves the process.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mlflow_app.config import Settings


def secrets_in(settings: Settings) -> list[str]:
    """Credential strings that must never appear in output."""
    found = []
    for uri in (
        settings.backend_store_uri,
        settings.registry_store_uri,
        settings.default_artifact_root,
        settings.artifacts_destination or "",
        settings.access.database_uri,
    ):
        password = urlsplit(uri).password
        if password:
            found.append(password)
    if settings.access.admin_password:
        found.append(settings.access.admin_password)
    return found


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def describe_error(error: object) -> str:
    """`ErrorType: first line`, at most 300 characters."""
    return f"{type(error).__name__}: {error_line(error)}"[:300]


def error_line(error: object) -> str:
    """The first line of an error's message."""
    text = str(error).strip().splitlines()
    # databricks-sdk appends its whole client configuration to every error message.
    return text[0].split(" Config: host=")[0] if text else ""
