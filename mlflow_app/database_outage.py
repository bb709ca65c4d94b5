"""Failing fast while the SQL database is unreachable.

Every connection gets a bounded connect timeout (PostgreSQL and MySQL wait for minutes by
default), and a store that cannot be built answers MLflow's 503 `TEMPORARILY_UNAVAILABLE` at
once, instead of MLflow's ~100 s of engine-creation retries holding a worker thread per
request. One thread per worker probes the database at a time, at most once per interval; the
others share its outcome or, after a failed probe, are answered straight away. The first probe
that connects lets MLflow build the store, so the service recovers by itself.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mlflow_app.config import Settings, uri_scheme
from mlflow_app.store_hooks import StoreBuilder, wrap_store_builders

CONNECT_TIMEOUT_SECONDS = 5
PROBE_INTERVAL_SECONDS = 2.0  # how soon after a failed probe the next may try
_SERVER_DATABASES = ("postgresql", "mysql")


def with_connect_timeout(uri: str, seconds: int = CONNECT_TIMEOUT_SECONDS) -> str:
    """The URI with the driver's `connect_timeout`, unless the user chose one."""
    if uri_scheme(uri) not in _SERVER_DATABASES:
        return uri
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "connect_timeout" for key, _ in query):
        return uri
    query.append(("connect_timeout", str(seconds)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def fail_fast_while_unreachable(settings: Settings) -> None:
    """Put an outage gate in front of the SQL store builders MLflow will call."""
    gates: dict[str, OutageGate] = {}

    def wrap(builder: StoreBuilder, uri: str) -> StoreBuilder:
        if uri_scheme(uri) not in _SERVER_DATABASES:
            return builder
        gate = gates.setdefault(uri, OutageGate(uri))

        def build(*args, **kwargs):
            gate.pass_or_refuse()
            return builder(*args, **kwargs)

        return build

    wrap_store_builders(settings, wrap)


class OutageGate:
    """Lets a store build only after a quick connection to its database succeeded."""

    def __init__(self, uri: str) -> None:
        self.uri = with_connect_timeout(uri)
        self.lock = threading.Lock()
        self.failed_at = float("-inf")
        self.passed_at = float("-inf")
        self.reason = ""

    def pass_or_refuse(self) -> None:
        """Return when the database answers; else raise MLflow's 503 error, at once while a
        recent probe failed. A caller arriving during a probe shares its outcome."""
        asked = time.monotonic()
        if asked - self.failed_at < PROBE_INTERVAL_SECONDS:
            raise unavailable(self.reason)
        if not self.lock.acquire(timeout=CONNECT_TIMEOUT_SECONDS + 1):
            raise unavailable(self.reason or "no answer from the database")
        try:
            if self.passed_at >= asked:
                return
            if self.failed_at < asked:
                self.probe()
                return
        finally:
            self.lock.release()
        raise unavailable(self.reason)

    def probe(self) -> None:
        try:
            self.connect_once()
        except Exception as error:
            from mlflow_app.error_text import error_line, redact

            self.failed_at = time.monotonic()
            password = urlsplit(self.uri).password
            self.reason = redact(error_line(error), [password] if password else [])
            raise unavailable(self.reason) from None
        self.passed_at = time.monotonic()

    def connect_once(self) -> None:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        engine = sqlalchemy.create_engine(self.uri, poolclass=NullPool)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()


def unavailable(reason: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    return MlflowException(
        f"The database is unreachable: {reason}", error_code=TEMPORARILY_UNAVAILABLE
    )
