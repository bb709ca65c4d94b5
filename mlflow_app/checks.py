"""Backend checks shared by readiness and the startup self-check.

Each check asks one backend a cheap question through MLflow's own stores, within a time limit,
and returns a `CheckResult` with a human reason and, on failure, the setting or action that
fixes it. Messages are scrubbed of credentials before they leave this module.
"""

from __future__ import annotations

import functools
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow_app import mlflow_internals as internals
from mlflow_app.config import Settings, uri_scheme
from mlflow_app.error_text import describe_error, error_line, redact, secrets_in

PROBE_DIR = ".mlflow-app-probe"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    ok: bool
    latency_ms: float
    reason: str
    fix: str = ""
    warning: bool = False  # passed, but something needs attention (see fix)

    @property
    def status(self) -> str:
        return "failed" if not self.ok else "warning" if self.warning else "ok"

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        del data["ok"], data["warning"]
        data["status"] = self.status
        data["latency_ms"] = round(self.latency_ms, 1)
        return data


class CheckWarning(Exception):
    """Raised by a probe that passed with a caveat."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason, self.fix = reason, fix


class CheckFailure(Exception):
    """Raised by a probe that failed with a fix of its own (e.g. the exact GRANT)."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason, self.fix = reason, fix


@dataclass(frozen=True)
class Check:
    name: str
    probe: Callable[[], str]
    fix: str


def run_checks(settings: Settings, *, write_probe: bool) -> list[CheckResult]:
    """Run every check for these settings, in parallel, each within the time limit;
    `write_probe` also writes to the artifact root."""
    checks = _checks(settings, write_probe)
    results: list[CheckResult | None] = [None] * len(checks)

    def run(index: int) -> None:
        results[index] = _timed(checks[index], settings)

    runners = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(checks))]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()  # each _timed returns by the time limit
    return [r for r in results if r is not None]


def _checks(settings: Settings, write_probe: bool) -> list[Check]:
    if settings.profile == "databricks":
        return _databricks_checks(settings, write_probe)
    checks = [
        Check(
            "tracking_store",
            _tracking_store_answers,
            "check MLFLOW_BACKEND_STORE_URI and that the database is reachable",
        ),
        Check(
            "model_registry",
            _registry_answers,
            "check MLFLOW_REGISTRY_STORE_URI and that the registry is reachable",
        ),
    ]
    if _server_database(settings.backend_store_uri):
        checks.append(
            Check(
                "database_connections",
                lambda: _connections_fit(settings),
                "check MLFLOW_BACKEND_STORE_URI",
            )
        )
    if settings.serve_artifacts or settings.default_artifact_root:
        setting = (
            "MLFLOW_ARTIFACTS_DESTINATION"
            if settings.serve_artifacts
            else "MLFLOW_DEFAULT_ARTIFACT_ROOT"
        )
        checks.append(
            _artifact_check(
                settings, write_probe, f"check {setting} exists and this service may write to it"
            )
        )
    if settings.platform.cloud_run_service and uri_scheme(settings.backend_store_uri) == "sqlite":
        checks.append(
            Check(
                "tracking_store",
                lambda: _refuse_disk_that_vanishes(
                    "the SQLite database", settings.backend_store_uri
                ),
                "set MLFLOW_BACKEND_STORE_URI to a PostgreSQL or MySQL database, e.g. Cloud SQL "
                "(deploy/cloudrun/README.md)",
            )
        )
    if settings.platform.cloud_run_service and (local := _local_artifact_path(settings)):
        checks.append(
            Check(
                "artifact_store",
                lambda: _refuse_disk_that_vanishes("artifacts", local),
                "set MLFLOW_ARTIFACTS_DESTINATION=gs://<bucket>/<prefix> (a bucket the "
                "service account may write)",
            )
        )
    return checks


def _local_artifact_path(settings: Settings) -> str | None:
    """Where artifacts would land on this machine's disk, if they would."""
    root = settings.default_artifact_root
    if root.startswith("mlflow-artifacts:"):
        destination = settings.artifacts_destination or ""
        return destination if "://" not in destination else None
    return root if root and "://" not in root else None


def _refuse_disk_that_vanishes(what: str, path: str) -> str:
    raise RuntimeError(
        f"{what} would be written to the container's disk ({path}), which Cloud Run "
        "discards when an instance stops"
    )


def _databricks_checks(settings: Settings, write_probe: bool) -> list[Check]:
    """The workspace, Unity Catalog and the volume, each failure naming the grant."""
    principal = "the app's service principal"
    volume = _volume_name(settings.volume_root)
    catalog, schema = volume.split(".")[:2] if volume else ("<catalog>", "<schema>")
    checks = [
        Check(
            "credentials",
            _databricks_identity,
            "set DATABRICKS_HOST with DATABRICKS_CLIENT_ID and "
            "DATABRICKS_CLIENT_SECRET (or DATABRICKS_TOKEN, or DATABRICKS_CONFIG_PROFILE)",
        ),
        Check(
            "tracking_store",
            _tracking_store_answers,
            "check DATABRICKS_HOST and that the workspace answers",
        ),
        Check(
            "experiment_folder",
            lambda: _experiment_folder_ready(settings.experiment_folder or "", write_probe),
            f"give {principal} CAN MANAGE on the workspace folder {settings.experiment_folder} "
            "(mlflow-app setup databricks does), or set MLFLOW_APP_EXPERIMENT_FOLDER to one "
            "it manages",
        ),
        Check(
            "model_registry",
            _registry_answers,
            f"grant {principal} USE CATALOG on {catalog}, USE SCHEMA and CREATE MODEL on "
            f"{catalog}.{schema}, or set MLFLOW_REGISTRY_STORE_URI",
        ),
    ]
    if volume:
        checks.append(
            _artifact_check(
                settings,
                write_probe,
                f"grant {principal} USE CATALOG on {catalog}, USE SCHEMA on {catalog}.{schema}, "
                f"READ VOLUME and WRITE VOLUME on {volume} (binding the volume as an app "
                "resource grants them), or set MLFLOW_DEFAULT_ARTIFACT_ROOT to another volume",
            )
        )
        checks.append(
            Check(
                "grants",
                lambda: _grants_held(
                    volume, uri_scheme(settings.registry_store_uri) == "databricks-uc"
                ),
                "",
            )
        )
    else:
        checks.append(Check("artifact_store", _workspace_artifacts_caveat, ""))
    return checks


def _grants_held(volume: str, registers_in_unity_catalog: bool) -> str:
    """Listing succeeds with no privileges at all; writing needs these. The principal reads
    its own effective grants (inherited ones included)."""
    from databricks.sdk.errors import PermissionDenied

    from mlflow_app.uc_grants import grant_statement, lacking, needed

    client = _workspace_client()
    principal = _own_user_name()
    wanted = needed(volume)
    if not registers_in_unity_catalog:
        wanted = {s: p - {"CREATE_MODEL"} for s, p in wanted.items()}
    try:
        missing = lacking(client, principal, wanted)
    except PermissionDenied as error:
        raise CheckWarning(
            f"could not read its own grants ({error_line(error)[:150]})",
            "mlflow-app doctor --app <app> checks them with your sign-in",
        ) from None
    if missing:
        raise CheckFailure(
            f"{principal} lacks "
            + "; ".join(f"{', '.join(p)} on {kind} {name}" for (kind, name), p in missing.items()),
            "; ".join(grant_statement(s, p, principal) for s, p in missing.items()),
        )
    held = sorted({p for privileges in wanted.values() for p in privileges})
    return f"{principal} holds {', '.join(p.replace('_', ' ') for p in held)}"


def _volume_name(volume_root: str | None) -> str | None:
    """dbfs:/Volumes/c/s/v/dir -> c.s.v"""
    if not volume_root:
        return None
    return ".".join(volume_root.removeprefix("dbfs:/Volumes/").split("/")[:3])


def _workspace_artifacts_caveat() -> str:
    raise CheckWarning(
        "no volume set: artifacts go to the workspace's default location, which clients "
        "can reach only with Databricks credentials of their own",
        "set MLFLOW_DEFAULT_ARTIFACT_ROOT=/Volumes/<catalog>/<schema>/<volume>/mlflow "
        "(on Databricks Apps: valueFrom the volume resource in app.yaml)",
    )


def _artifact_check(settings: Settings, write_probe: bool, fix: str) -> Check:
    probe = _artifact_round_trip if write_probe else _artifact_root_lists
    return Check("artifact_store", lambda: probe(settings), fix)


def _timed(check: Check, settings: Settings) -> CheckResult:
    """Run a probe in a daemon thread so a hung backend costs at most the time limit."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["reason"] = check.probe()
        except BaseException as error:  # a probe failure of any kind is a failed check
            outcome["error"] = error

    started = time.perf_counter()
    worker = threading.Thread(target=target, name=f"check-{check.name}", daemon=True)
    worker.start()
    worker.join(settings.check_timeout_seconds)
    latency = (time.perf_counter() - started) * 1000
    if worker.is_alive():
        reason = f"no answer within {settings.check_timeout_seconds:g} s"
        return CheckResult(check.name, False, latency, reason, check.fix)
    if isinstance(caveat := outcome.get("error"), CheckWarning):
        return CheckResult(check.name, True, latency, caveat.reason, caveat.fix, warning=True)
    if isinstance(failure := outcome.get("error"), CheckFailure):
        return CheckResult(check.name, False, latency, failure.reason, failure.fix)
    if "error" in outcome:
        error = outcome["error"]
        reason = redact(describe_error(error), secrets_in(settings))
        return CheckResult(check.name, False, latency, reason, _missing_driver(error) or check.fix)
    return CheckResult(check.name, True, latency, str(outcome["reason"]))


# Database drivers SQLAlchemy loads by URI scheme, and the package that provides each.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pymysql": "pymysql",
    "MySQLdb": "mysqlclient",
    "pyodbc": "pyodbc",
    "boto3": "boto3",
    "google": "google-cloud-storage",
}


def _missing_driver(error: object) -> str:
    if isinstance(error, ModuleNotFoundError) and error.name:
        package = _DRIVER_PACKAGES.get(error.name.split(".")[0])
        if package:
            return f"install the client library: pip install '{package}'"
    return ""


def _tracking_store_answers() -> str:
    internals.tracking_store().search_experiments(max_results=1)
    return "experiments can be listed"


def _experiment_folder_ready(folder: str, write_probe: bool) -> str:
    """Experiment 0 is the folder's Default experiment: created at startup (which proves the
    service principal may create experiments there), found by readiness."""
    from mlflow_app.experiment_folder import ExperimentFolder, ensure_experiment

    default = ExperimentFolder(folder).default_path
    store = internals.tracking_store()
    if write_probe:
        _workspace_client().workspace.mkdirs(folder)
        ensure_experiment(store, default)
    elif store.get_experiment_by_name(default) is None:
        raise RuntimeError(f"{default} (experiment 0) does not exist; the startup check makes it")
    return f"bare experiment names live in {folder}; experiment 0 is {default}"


def _registry_answers() -> str:
    internals.registry_store().search_registered_models(max_results=1)
    return "registered models can be listed"


def _server_database(uri: str) -> bool:
    return uri_scheme(uri) in ("postgresql", "mysql")


def _connections_fit(settings: Settings) -> str:
    """Compare the connections all replicas may open with what the database allows."""
    import sqlalchemy

    from mlflow_app.database_outage import with_connect_timeout

    engine = sqlalchemy.create_engine(
        with_connect_timeout(settings.backend_store_uri), poolclass=sqlalchemy.pool.NullPool
    )
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                allowed = int(connection.execute(sqlalchemy.text("SHOW max_connections")).scalar())
                allowed -= int(
                    connection.execute(
                        sqlalchemy.text("SHOW superuser_reserved_connections")
                    ).scalar()
                )
            else:
                allowed = int(
                    connection.execute(sqlalchemy.text("SELECT @@max_connections")).scalar()
                )
    finally:
        engine.dispose()
    needed = settings.connections_needed
    summary = (
        f"{settings.replicas} replicas x {settings.workers} workers x 2 pools x "
        f"({settings.pool_size} + {settings.max_overflow} overflow) = {needed} "
        f"connections; the database allows {allowed}"
    )
    if needed > allowed:
        raise CheckWarning(
            summary,
            "lower MLFLOW_WORKERS or MLFLOW_SQLALCHEMYSTORE_POOL_SIZE, or raise the database's "
            f"max_connections to at least {needed}",
        )
    return summary


def _artifact_repository(settings: Settings):  # -> ArtifactRepository
    if settings.serve_artifacts:
        return internals.proxied_artifact_repository()
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(settings.default_artifact_root)


def _artifact_root_lists(settings: Settings) -> str:
    _artifact_repository(settings).list_artifacts()
    return "artifact root can be listed"


def _artifact_round_trip(settings: Settings) -> str:
    """Write a probe object, read it back, delete it."""
    repo = _artifact_repository(settings)
    token = uuid.uuid4().hex
    # A directory of its own at the root: deleting it leaves nothing for clients to list.
    remote_dir = f"{PROBE_DIR}-{token}"
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / "probe.txt"
        probe.write_text(token)
        repo.log_artifact(str(probe), remote_dir)
        try:
            download_dir = Path(scratch) / "download"
            download_dir.mkdir()
            fetched = repo.download_artifacts(f"{remote_dir}/probe.txt", str(download_dir))
            if Path(fetched).read_text() != token:
                raise OSError("probe object read back differs from what was written")
        finally:
            repo.delete_artifacts(remote_dir)
    return "probe object written, read back and deleted"


@functools.cache
def _workspace_client():  # -> databricks.sdk.WorkspaceClient, one per process
    # One client keeps one OAuth token until it expires, however often readiness asks.
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config
    from mlflow.environment_variables import MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT

    # The same retry budget MLflow's own Databricks calls get (set from our settings).
    return WorkspaceClient(
        config=Config(retry_timeout_seconds=MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT.get())
    )


@functools.cache
def _own_user_name() -> str:
    # Who this process is does not change; readiness need not ask the workspace every time.
    return _workspace_client().current_user.me().user_name


def _databricks_identity() -> str:
    me = _workspace_client().current_user.me()
    return f"authenticated as {me.user_name or me.id}"
