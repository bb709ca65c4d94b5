"""Databricks mode's credential reuse, without a workspace (no sockets)."""

from __future__ import annotations

import threading

import pytest
from mlflow.exceptions import MlflowException

from mlflow_app.databricks import CredentialsOnce


def test_credentials_are_resolved_once_and_a_hang_is_bounded() -> None:
    calls = []
    once = CredentialsOnce(lambda: calls.append(1) or "creds", timeout=1)
    assert once() == once() == "creds"
    assert calls == [1]

    release = threading.Event()
    slow = CredentialsOnce(lambda: release.wait(10) and "late", timeout=1)
    with pytest.raises(MlflowException) as raised:
        slow()
    assert raised.value.error_code == "TEMPORARILY_UNAVAILABLE"
    release.set()
    assert slow() == "late"
