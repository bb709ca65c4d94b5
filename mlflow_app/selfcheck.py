"""Startup self-check, run once in the gunicorn master before workers fork.

It proves the port can be bound and every backend answers (the artifact root with a
write-read-delete probe), prints a table, and stops startup on failure unless
MLFLOW_APP_START_DEGRADED lets the platform start us with readiness at 503.
"""

from __future__ import annotations

import errno
import logging
import socket

from mlflow_app.checks import CheckResult, redact, render_table, run_checks, secrets_in
from mlflow_app.config import Settings
from mlflow_app.migrations import SchemaError, prepare_schema


class StartupError(SystemExit):
    """Stops the process with one line on stderr (SystemExit prints its message)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"mlflow-app: {message}")


def ensure_port_bindable(settings: Settings) -> None:
    """Fail with the fix before gunicorn retries a bind that cannot succeed."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except PermissionError:
            raise StartupError(
                f"PORT: port {settings.port} needs root privileges to listen on; "
                "set PORT to 1024 or above, e.g. PORT=8080"
            ) from None
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"PORT: port {settings.port} on {settings.host} is already in use; "
                    "stop the other server or set PORT to a free port"
                ) from None
            raise StartupError(
                f"MLFLOW_APP_HOST: cannot listen on {settings.bind} ({error.strerror}); "
                "set MLFLOW_APP_HOST to an address of this machine, e.g. 0.0.0.0"
            ) from None


def startup_selfcheck(settings: Settings, log: logging.Logger) -> list[CheckResult]:
    """Prepare the schema, run every check with the write probe; stop startup on failure
    unless degraded is allowed."""
    prepare_schema_or_stop(settings, log)
    results = run_checks(settings, write_probe=True)
    table = render_table(results)
    failed = [r for r in results if not r.ok]
    release_store_connections()
    if not failed:
        log.info("self-check passed:\n%s", table)
        return results
    if settings.start_degraded:
        log.warning("self-check failed; starting degraded (readiness 503):\n%s", table)
        return results
    raise StartupError(
        f"self-check failed ({', '.join(r.name for r in failed)}); "
        "set MLFLOW_APP_START_DEGRADED=true to start anyway\n" + table
    )


def prepare_schema_or_stop(settings: Settings, log: logging.Logger) -> None:
    """Migrate (or verify) the schema; an unreachable database is left to the checks' report."""
    try:
        for line in prepare_schema(settings):
            log.info("schema: %s", line)
    except SchemaError as error:
        raise StartupError(f"MLFLOW_APP_MIGRATE={settings.migrate}: {error}") from None
    except Exception as error:  # the database may be down: the store checks say why
        reason = redact(
            str(error).strip().splitlines()[0] if str(error).strip() else "", secrets_in(settings)
        )
        log.warning("schema not prepared (%s: %s)", type(error).__name__, reason[:300])


def release_store_connections() -> None:
    """Close pooled database connections so forked workers never share a socket."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    for store_cls in (TrackingStore, RegistryStore):
        for engine in list(getattr(store_cls, "_engine_map", {}).values()):
            engine.dispose()
