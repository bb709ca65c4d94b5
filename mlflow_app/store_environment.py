"""Settings -> the environment MLflow and prometheus_client read when they are imported.

MLflow's Flask app takes its stores from private `_MLFLOW_SERVER_*` variables (see
`mlflow/server/constants.py`), and prometheus_client picks multiprocess mode from
`PROMETHEUS_MULTIPROC_DIR`; both must be in `os.environ` before those imports and before
gunicorn forks, so this is the one module that writes the environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from mlflow_app import mlflow_internals as internals
from mlflow_app.config import Settings, uri_scheme
from mlflow_app.database_outage import with_connect_timeout


def store_environment(settings: Settings) -> dict[str, str]:
    """The variables `mlflow server` would set for these settings."""
    env = {
        # An unreachable database must fail within seconds, not the driver's minutes.
        internals.SERVER_BACKEND_STORE: with_connect_timeout(settings.backend_store_uri),
        internals.SERVER_REGISTRY_STORE: with_connect_timeout(settings.registry_store_uri),
        internals.SERVER_ARTIFACT_ROOT: settings.default_artifact_root,
        internals.SERVER_GATEWAY_NAME: "gunicorn",
        # The job runner is a separate process tree that `mlflow server` supervises; we do not
        # run it (see docs/benchmarks.md, "Differences from mlflow server"), so job routes
        # report it off.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # front_door.HostAndOrigin checks Host against settings.allowed_hosts (as the proxy
        # reported it, with a JSON 403); MLflow's own check would see the same Host again.
        "MLFLOW_SERVER_ALLOWED_HOSTS": "*",
        # Sized so each worker thread has a connection; see Settings.connections_needed.
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(settings.pool_size),
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(settings.max_overflow),
        # A throttled or unreachable workspace must not hold a worker thread for minutes.
        "MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT": str(settings.upstream_retry_seconds),
    }
    if settings.serve_artifacts:
        env[internals.SERVER_SERVE_ARTIFACTS] = "true"
        if settings.artifacts_destination:
            env[internals.SERVER_ARTIFACT_DESTINATION] = settings.artifacts_destination
    if settings.profile == "databricks":
        # The databricks-uc store reads runs and logged models through MLflow's fluent API
        # when it registers a model version; without these it would use a local ./mlruns.
        env["MLFLOW_TRACKING_URI"] = settings.backend_store_uri
        env["MLFLOW_REGISTRY_URI"] = settings.registry_store_uri
    if settings.static_prefix:
        env[internals.SERVER_STATIC_PREFIX] = settings.static_prefix
    return env


# Seconds a checked password is trusted before it is checked again (ours and MLflow's).
AUTH_CACHE_SECONDS = 60


def auth_environment(settings: Settings, config_dir: Path) -> dict[str, str]:
    """What MLflow's auth app reads, for basic and trusted-header access control."""
    access = settings.access
    config = config_dir / "mlflow-auth.ini"
    config.write_text(mlflow_auth_config(settings))
    config.chmod(0o600)  # the database URI may hold a password
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        # trusted-header's bootstrap admin signs in through the proxy, never with a password.
        "MLFLOW_AUTH_ADMIN_PASSWORD": access.admin_password or secrets.token_urlsafe(32),
        "MLFLOW_AUTH_ADMIN_USERNAME": bootstrap_admin(settings),
        # Routes neither MLflow's auth nor its validators know are refused, not let through.
        "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
    }


def mlflow_auth_config(settings: Settings) -> str:
    """The ini file MLflow's auth app reads (MLFLOW_AUTH_CONFIG_PATH)."""
    access = settings.access
    function = (
        "mlflow_app.access:authenticate_trusted_header"
        if access.mode == "trusted-header"
        else "mlflow.server.auth:authenticate_request_basic_auth"
    )
    return (
        "[mlflow]\n"
        f"default_permission = {access.default_permission}\n"
        f"database_uri = {access.database_uri}\n"
        f"admin_username = {bootstrap_admin(settings)}\n"
        f"authorization_function = {function}\n"
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n"
    )


def bootstrap_admin(settings: Settings) -> str:
    """The admin MLflow creates on first start: the configured one, or for trusted-header
    the first admin identity."""
    access = settings.access
    return access.admins[0] if access.mode == "trusted-header" else access.admin_username


def apply_store_environment(
    settings: Settings, environ: MutableMapping[str, str] | None = None
) -> None:
    """Write `store_environment(settings)` into the process environment, and make local dirs."""
    target = os.environ if environ is None else environ
    target.update(store_environment(settings))
    if settings.access.uses_mlflow_auth:
        target.update(auth_environment(settings, Path(tempfile.mkdtemp(prefix="mlflow-app-"))))
        # Flask signs the sign-up form's CSRF token with it: one key for all workers.
        target.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_urlsafe(32))
        if settings.access.database_uri.startswith("sqlite:///"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
    if uri_scheme(settings.registry_store_uri) == "databricks-uc":
        # UC model files through the Files API on the workspace host, whatever the workspace
        # prefers (docs/databricks-apps.md, "UC model files"); a value the user set wins.
        target.setdefault("MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC", "true")
    if settings.profile == "embedded" or (
        settings.artifacts_destination and "://" not in settings.artifacts_destination
    ):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.artifacts_destination and "://" not in settings.artifacts_destination:
        os.makedirs(settings.artifacts_destination, exist_ok=True)


def apply_metrics_environment(settings: Settings) -> Path | None:
    """Give prometheus_client an empty multiprocess directory (gunicorn master, before fork).

    Files left by a previous run would be summed into this one's counters, so the directory
    is emptied; without MLFLOW_APP_METRICS_DIR each start gets a new one.
    """
    if not settings.metrics:
        return None
    if settings.metrics_dir is None:
        directory = Path(tempfile.mkdtemp(prefix="mlflow-app-metrics-"))
    else:
        directory = settings.metrics_dir
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory
