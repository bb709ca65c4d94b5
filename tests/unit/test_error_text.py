"""mlflow_app/error_text.py: one line, and no credential in it."""

from __future__ import annotations

from mlflow_app.config import load_settings
from mlflow_app.error_text import describe_error, error_line, redact, secrets_in


def test_every_password_the_settings_hold_is_found_and_redacted() -> None:
    settings = load_settings(
        {
            "MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:db-Pass-1@db/mlflow",
            "MLFLOW_APP_AUTH": "basic",
            "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-Pass-2",
        }
    )
    found = secrets_in(settings)
    assert {"db-Pass-1", "admin-Pass-2"} <= set(found)
    text = redact("connect to postgresql://mlflow:db-Pass-1@db failed (admin-Pass-2)", found)
    assert "db-Pass-1" not in text and "admin-Pass-2" not in text and text.count("***") == 2


def test_an_sdk_error_is_one_line_without_the_client_configuration() -> None:
    error = PermissionError(
        "User lacks WRITE VOLUME. Config: host=https://x, client_id=abc, client_secret=***\nmore"
    )
    assert error_line(error) == "User lacks WRITE VOLUME."
    assert describe_error(error) == "PermissionError: User lacks WRITE VOLUME."
    assert len(describe_error(ValueError("x" * 1000))) == 300
    assert error_line(ValueError("")) == ""
