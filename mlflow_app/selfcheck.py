"""Startup self-check, run once in the gunicorn master before workers fork.

It proves the port can be bound and every backend answers (the artifact root with a
write-read-delete probe), prints a table, and stops startup on failure unless
MLFLOW_APP_START_DEGRADED lets the platform start us with readiness at 503.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from mlflow_app.checks import CheckResult, run_checks
from mlflow_app.config import Settings, unrecognised_settings
from mlflow_app.error_text import describe_error, redact, secrets_in
from mlflow_app.findings import render_table
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
    """Prepare the schema and run every check with the write probe, in a forked child; stop
    startup on failure unless degraded is allowed.

    The child holds every connection and client the checks open (database pools, HTTP
    sessions, cloud storage clients), so none is inherited by, and shared between, the workers
    the master forks next.
    """
    for line in unrecognised_settings(os.environ, mlflow_setting_names()):
        log.warning("%s", line)
    outcome = checked_apart(settings)
    if outcome.stop_reason:
        raise StartupError(outcome.stop_reason)
    for level, line in outcome.schema_notes:
        log.log(level, "schema: %s", line)
    results = outcome.results
    table = render_table(results)
    failed = [r for r in results if not r.ok]
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


def mlflow_setting_names() -> set[str]:
    """The environment variables MLflow itself declares (mlflow.environment_variables)."""
    import mlflow.environment_variables as declared

    from mlflow_app.client_tokens import AUDIENCE_SETTING, SETTING

    return {SETTING, AUDIENCE_SETTING} | {  # ours are read by clients, through MLflow
        variable.name
        for variable in vars(declared).values()
        if isinstance(getattr(variable, "name", None), str) and hasattr(variable, "get")
    }


@dataclass(frozen=True)
class SelfCheckOutcome:
    """What the schema step and the checks found; `stop_reason` ends startup before any check."""

    schema_notes: list[tuple[int, str]] = field(default_factory=list)  # (log level, line)
    results: list[CheckResult] = field(default_factory=list)
    stop_reason: str = ""


def checked_apart(settings: Settings) -> SelfCheckOutcome:
    """`schema_and_checks` in a forked child, so this process holds none of the stores and
    clients it built (MLflow caches stores; ours must be built after the wrappers are in)."""
    return _in_forked_child(schema_and_checks, settings)


def schema_and_checks(settings: Settings) -> SelfCheckOutcome:
    try:
        notes = [(logging.INFO, line) for line in prepare_schema(settings)]
    except SchemaError as error:
        return SelfCheckOutcome(stop_reason=f"MLFLOW_APP_MIGRATE={settings.migrate}: {error}")
    except Exception as error:  # the database may be down: the store checks say why
        reason = redact(describe_error(error), secrets_in(settings))
        notes = [(logging.WARNING, f"not prepared ({reason})")]
    return SelfCheckOutcome(notes, run_checks(settings, write_probe=True))


def _in_forked_child(
    function: Callable[[Settings], SelfCheckOutcome], settings: Settings
) -> SelfCheckOutcome:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_send_result, args=(sender, function, settings), name="mlflow-app-selfcheck"
    )
    child.start()
    sender.close()
    try:
        return receiver.recv()
    except EOFError:
        return SelfCheckOutcome(
            stop_reason=f"self-check process died (exit code {child.exitcode}); see the log"
        )
    finally:
        child.join()


def _send_result(
    sender, function: Callable[[Settings], SelfCheckOutcome], settings: Settings
) -> None:
    try:
        sender.send(function(settings))
    finally:
        sender.close()
