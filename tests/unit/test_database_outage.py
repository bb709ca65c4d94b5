"""Connect timeouts and the outage gate in front of SQL store construction."""

from __future__ import annotations

import socket
import threading

import pytest
from mlflow.exceptions import MlflowException

from mlflow_app.database_outage import OutageGate, with_connect_timeout


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgresql://u:p@db/mlflow", "postgresql://u:p@db/mlflow?connect_timeout=5"),
        (
            "mysql+pymysql://u@db/m?charset=utf8",
            "mysql+pymysql://u@db/m?charset=utf8&connect_timeout=5",
        ),
        ("postgresql://db/m?connect_timeout=30", "postgresql://db/m?connect_timeout=30"),
        ("sqlite:////data/mlflow.db", "sqlite:////data/mlflow.db"),
        ("databricks", "databricks"),
    ],
)
def test_server_databases_get_a_connect_timeout(uri: str, expected: str) -> None:
    assert with_connect_timeout(uri) == expected


def test_a_refused_connection_is_503_at_once_and_not_retried_for_a_while() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gate = OutageGate(f"postgresql://mlflow:pw-Secr3t@127.0.0.1:{port}/mlflow")
    attempts = []
    gate.connect_once = lambda original=gate.connect_once: (attempts.append(1), original())
    for _ in range(3):
        with pytest.raises(MlflowException) as refused:
            gate.pass_or_refuse()
        assert refused.value.error_code == "TEMPORARILY_UNAVAILABLE"
        assert "pw-Secr3t" not in refused.value.message
    assert len(attempts) == 1  # the next probe waits for the interval


def test_callers_during_a_probe_share_its_success() -> None:
    """The tracking and registry stores are built at once for one database (the self-check
    asks both in parallel): the second must not be refused while the first connects."""
    gate = OutageGate("postgresql://mlflow@127.0.0.1:1/mlflow")
    probing, release, attempts = threading.Event(), threading.Event(), []

    def slow_success() -> None:
        attempts.append(1)
        probing.set()
        release.wait(5)

    gate.connect_once = slow_success
    first = threading.Thread(target=gate.pass_or_refuse)
    first.start()
    probing.wait(5)
    second_outcome: list[object] = []
    second = threading.Thread(target=lambda: second_outcome.append(gate.pass_or_refuse()))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert second_outcome == [None]
    assert len(attempts) == 1
