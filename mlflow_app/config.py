"""Settings: the table of every environment variable, and the one place that reads them.

Each row of `SETTINGS` names a variable, its kind (how it parses, validates and documents its
default) and the `Settings` field it fills; `load_settings` walks the table, then the rules in
config_rules join what several settings mean together. A value we cannot start with raises
`ConfigError`, one line naming the setting and the fix. docs/configuration.md's table is
rendered from here.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

from mlflow_app import config_rules
from mlflow_app.config_rules import (
    AUTH_MODES,
    PERMISSIONS,
    AccessSettings,
    Platform,
    mask_uri,
    uri_scheme,
)
from mlflow_app.setting_kinds import (
    ConfigError,
    Directory,
    Flag,
    Items,
    Kind,
    OneOf,
    PathPrefix,
    Seconds,
    SecretFile,
    Text,
    UrlPath,
    Whole,
)

# Importers read these here: the settings' module is where a newcomer looks for them.
__all__ = [
    "SETTINGS",
    "AccessSettings",
    "ConfigError",
    "Platform",
    "Setting",
    "Settings",
    "load_settings",
    "mask_uri",
    "settings_table",
    "unrecognised_settings",
    "uri_scheme",
]


@dataclass(frozen=True)
class Setting:
    """One environment variable: how it parses, what it fills, what the docs say."""

    name: str
    kind: Kind
    description: str
    field: str | None = None  # the Settings field it fills alone; None: a rule reads it
    default_note: str | None = None  # the documented default, where a rule derives it
    aliases: tuple[str, ...] = ()
    alias_first: bool = False  # the alias wins when both are set (the platform's variable)

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.aliases, self.name) if self.alias_first else (self.name, *self.aliases)

    @property
    def documented_default(self) -> str:
        return self.kind.documented if self.default_note is None else self.default_note


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MLFLOW_BACKEND_STORE_URI",
        Text(),
        "Tracking store URI: sqlite:///..., postgresql://..., mysql://... (PyMySQL), "
        "databricks. Unset: `databricks` on Databricks Apps, else SQLite under "
        "MLFLOW_APP_DATA_DIR.",
        default_note="(derived)",
        aliases=("MLFLOW_TRACKING_URI",),
    ),
    Setting(
        "MLFLOW_BACKEND_STORE_URI_FILE",
        SecretFile("the store URI"),
        "File holding the backend store URI (a mounted secret); used when the URI is unset.",
    ),
    Setting(
        "MLFLOW_REGISTRY_STORE_URI_FILE",
        SecretFile("the store URI"),
        "File holding the registry store URI; used when the registry URI is unset.",
    ),
    Setting(
        "MLFLOW_REGISTRY_STORE_URI",
        Text(),
        "Model registry URI. Unset: `databricks-uc` on Databricks Apps, else the backend store.",
        default_note="(derived)",
        aliases=("MLFLOW_REGISTRY_URI",),
    ),
    Setting(
        "MLFLOW_DEFAULT_ARTIFACT_ROOT",
        Text(),
        "Artifact root for new experiments (s3://, gs://, or the proxy). In Databricks "
        "mode a UC volume (/Volumes/<catalog>/<schema>/<volume>[/<dir>] or "
        "<catalog>.<schema>.<volume>): new experiments keep artifacts there, reached "
        "through the proxy. A volume without a directory (what app.yaml's `valueFrom` "
        "gives) means its `mlflow` directory.",
        default_note="mlflow-artifacts:/",
        aliases=("MLFLOW_ARTIFACT_ROOT",),
    ),
    Setting(
        "MLFLOW_ARTIFACTS_DESTINATION",
        Text(),
        "Where the artifact proxy stores files (local path, s3://, gs://).",
        default_note="<MLFLOW_APP_DATA_DIR>/artifacts",
    ),
    Setting(
        "MLFLOW_SERVE_ARTIFACTS",
        Flag(None),
        "Proxy artifact uploads and downloads through this server.",
        default_note="true",
    ),
    Setting(
        "MLFLOW_STATIC_PREFIX",
        PathPrefix(),
        "Path prefix for every route, e.g. /mlflow behind a path-routing proxy.",
        field="static_prefix",
    ),
    Setting(
        "MLFLOW_SERVER_ALLOWED_HOSTS",
        Items(),
        "Comma-separated Host headers to accept. Unset: localhost, private addresses and "
        "the platform's public host (*.databricksapps.com, *.run.app).",
        default_note="(derived)",
    ),
    Setting(
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS",
        Items(),
        "Comma-separated other origins (https://app.example.com, or patterns with *) "
        "whose pages may write to this server. Same-origin requests always pass; * allows"
        " any.",
        field="cors_allowed_origins",
    ),
    Setting(
        "MLFLOW_APP_TRUSTED_PROXIES",
        Items(),
        "Comma-separated addresses or CIDRs of the proxies in front: their X-Forwarded-"
        "Proto, -Host, -For, -Prefix and identity headers are believed; anyone else's are"
        " dropped or refused.",
        default_note=(
            "127.0.0.1/32,::1/128 (Databricks Apps: private ranges; Cloud Run: 169.254.0.0/16 too)"
        ),
    ),
    Setting(
        "MLFLOW_WORKERS",
        Whole(None, 1, 64, "set it to the number of worker processes, e.g. 4"),
        "gunicorn worker processes. The default reads the cgroup CPU quota and the CPU "
        "affinity, never the host's CPU count, which a container also sees.",
        default_note="CPUs the container may use (at least 2)",
    ),
    Setting(
        "MLFLOW_APP_THREADS",
        Whole(4, 1, 64, "set it to the threads per worker, e.g. 4"),
        "Threads per worker (gthread).",
        field="threads",
    ),
    Setting(
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE",
        Whole(None, 1, 1000, "set it to connections per worker, e.g. 4"),
        "Database connections a worker keeps per store (MLflow's setting; tracking and "
        "registry each have a pool).",
        default_note="MLFLOW_APP_THREADS",
    ),
    Setting(
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW",
        Whole(1, 0, 1000, "set it to extra connections, e.g. 1"),
        "Connections a worker may open per store beyond the pool (the readiness check's).",
        field="max_overflow",
    ),
    Setting(
        "MLFLOW_APP_REPLICAS",
        Whole(1, 1, 10000, "set it to the number of replicas, e.g. 3"),
        "Replicas sharing the database; the self-check warns when replicas x workers x "
        "pools cannot fit the database's max_connections.",
        field="replicas",
    ),
    Setting(
        "PORT",
        Whole(None, 1, 65535, "set PORT to a free port such as 8080"),
        "Port to listen on. DATABRICKS_APP_PORT takes precedence.",
        default_note="80",
        aliases=("DATABRICKS_APP_PORT",),
        alias_first=True,
    ),
    Setting(
        "MLFLOW_APP_HOST",
        Text("0.0.0.0"),
        "Address to listen on.",
        field="host",
    ),
    Setting(
        "MLFLOW_APP_DATA_DIR",
        Directory("./mlflow-data"),
        "Directory for the embedded SQLite database and local artifacts.",
        field="data_dir",
    ),
    Setting(
        "MLFLOW_APP_HEALTH_PATH",
        UrlPath("/healthz"),
        "Liveness endpoint.",
        field="health_path",
    ),
    Setting(
        "MLFLOW_APP_READY_PATH",
        UrlPath("/readyz"),
        "Readiness endpoint (JSON report per check).",
        field="ready_path",
    ),
    Setting(
        "MLFLOW_APP_READY_API_PATH",
        UrlPath("/api/readyz"),
        "Alias of the readiness endpoint under /api/, the only prefix where Databricks "
        "Apps accepts bearer tokens from outside.",
        field="ready_api_path",
    ),
    Setting(
        "MLFLOW_APP_READINESS_CACHE_SECONDS",
        Seconds(5.0, 0, 3600),
        "How long a readiness report is reused, so probes cannot overload the backend.",
        field="readiness_cache_seconds",
    ),
    Setting(
        "MLFLOW_APP_CHECK_TIMEOUT_SECONDS",
        Seconds(10.0, 0.1, 600),
        "Time limit for each readiness or self-check probe.",
        field="check_timeout_seconds",
    ),
    Setting(
        "MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT",
        Whole(10, 0, 3600, "set it to seconds, e.g. 10"),
        "Seconds MLflow may spend retrying a throttled or failing Databricks call before "
        "the client gets the 429/503 (MLflow's own default is 500).",
        field="upstream_retry_seconds",
    ),
    Setting(
        "MLFLOW_APP_MIGRATE",
        OneOf("auto", ("auto", "check", "off")),
        "Database schema at startup: auto creates or upgrades it (once, under a database "
        "lock), check stops startup if it is not current, off leaves it to MLflow.",
        field="migrate",
    ),
    Setting(
        "MLFLOW_APP_METRICS",
        Flag(True),
        "Record Prometheus metrics and serve them.",
        field="metrics",
    ),
    Setting(
        "MLFLOW_APP_METRICS_PATH",
        UrlPath("/metrics"),
        "Prometheus exposition endpoint.",
        field="metrics_path",
    ),
    Setting(
        "MLFLOW_APP_METRICS_API_PATH",
        UrlPath("/api/metrics"),
        "Alias of the metrics endpoint under /api/, the only prefix where Databricks Apps"
        " accepts bearer tokens from outside.",
        field="metrics_api_path",
    ),
    Setting(
        "MLFLOW_APP_METRICS_DIR",
        Directory(),
        "prometheus_client multiprocess directory; emptied when the server starts.",
        field="metrics_dir",
        default_note="(new temporary directory)",
    ),
    Setting(
        "MLFLOW_APP_START_DEGRADED",
        Flag(False),
        "Start even when the self-check fails (readiness stays 503 until it passes).",
        field="start_degraded",
    ),
    Setting(
        "MLFLOW_APP_AUTH",
        OneOf("none", AUTH_MODES),
        "Access control: none, basic (MLflow's users and per-resource permissions), "
        "trusted-header (identity from an authenticating proxy), databricks-apps "
        "(identity from the Databricks Apps proxy).",
    ),
    Setting(
        "MLFLOW_AUTH_ADMIN_USERNAME",
        Text("admin"),
        "basic / trusted-header: the admin user created on first start (MLflow's setting).",
    ),
    Setting(
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        Text(),
        "basic: the admin's initial password (MLflow's setting), or use the _FILE variant.",
        default_note="(required for basic)",
    ),
    Setting(
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE",
        SecretFile("the password"),
        "File holding the admin's initial password (a mounted secret).",
    ),
    Setting(
        "MLFLOW_APP_AUTH_DEFAULT_PERMISSION",
        OneOf("READ", PERMISSIONS),
        "Permission every user has on resources nobody granted them: READ, EDIT, MANAGE "
        "or NO_PERMISSIONS.",
    ),
    Setting(
        "MLFLOW_APP_AUTH_DATABASE_URI",
        Text(),
        "Where basic / trusted-header keep users and permissions; share it across replicas.",
        default_note="sqlite:///<MLFLOW_APP_DATA_DIR>/auth.db",
    ),
    Setting(
        "MLFLOW_APP_AUTH_HEADER",
        Text("X-Forwarded-Email"),
        "trusted-header: the header the authenticating proxy puts the user's identity in.",
    ),
    Setting(
        "MLFLOW_APP_AUTH_ADMINS",
        Items(),
        "trusted-header: comma-separated identities that are admins.",
    ),
    Setting(
        "MLFLOW_APP_DATABRICKS_ON_BEHALF_OF_USER",
        Flag(False),
        "Refused when true: the user token Databricks Apps forwards carries only the "
        "app's user API scopes, and none of them covers MLflow's REST API, so every call "
        "would be denied.",
    ),
    Setting(
        "MLFLOW_APP_EXPERIMENT_FOLDER",
        Text(),
        "Databricks mode: the workspace folder experiment names without a leading `/` "
        "live in (shown without it), and whose `Default` experiment is experiment 0. "
        "Unset: /Shared/<DATABRICKS_APP_NAME>, or /Shared/mlflow-app off Databricks Apps.",
        default_note="/Shared/<app name>",
    ),
    Setting(
        "MLFLOW_APP_CLIENT_TIMEOUT_SECONDS",
        Seconds(30.0, 1, 3600),
        "Seconds a client has to send a request's headers, or between two reads of its "
        "body; also how long a connection that sends nothing stays open. Waiting costs no"
        " thread.",
        field="client_timeout",
    ),
    Setting(
        "MLFLOW_APP_GRACEFUL_TIMEOUT",
        Whole(10, 0, 3600, "set it to seconds, e.g. 10"),
        "Seconds a worker may finish in-flight requests after SIGTERM.",
        field="graceful_timeout",
    ),
    Setting(
        "MLFLOW_APP_LOG_LEVEL",
        OneOf("info", ("debug", "info", "warning", "error", "critical")),
        "gunicorn and application log level.",
        field="log_level",
    ),
)
_ROWS = {row.name: row for row in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Everything the service needs, validated. Build it with `load_settings`."""

    profile: str
    # dbfs:/Volumes/<catalog>/<schema>/<volume>[/<dir>]: where experiments created through
    # the service keep their artifacts (Databricks mode only).
    volume_root: str | None
    # The workspace folder bare experiment names map into (Databricks mode only).
    experiment_folder: str | None
    backend_store_uri: str
    registry_store_uri: str
    default_artifact_root: str
    artifacts_destination: str | None
    serve_artifacts: bool
    static_prefix: str
    allowed_hosts: tuple[str, ...]
    cors_allowed_origins: tuple[str, ...]
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
    workers: int
    threads: int
    pool_size: int
    max_overflow: int
    replicas: int
    host: str
    port: int
    data_dir: Path
    health_path: str
    ready_path: str
    ready_api_path: str
    readiness_cache_seconds: float
    check_timeout_seconds: float
    upstream_retry_seconds: int
    migrate: str
    metrics: bool
    metrics_path: str
    metrics_api_path: str
    metrics_dir: Path | None
    start_degraded: bool
    client_timeout: float
    graceful_timeout: int
    log_level: str
    platform: Platform
    access: AccessSettings

    @property
    def connections_needed(self) -> int:
        """Database connections all replicas may hold: a tracking and a registry pool each."""
        return self.replicas * self.workers * 2 * (self.pool_size + self.max_overflow)

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def describe(self) -> dict[str, str]:
        """The effective settings as strings, with every credential masked."""
        return {
            "profile": self.profile,
            "volume_root": self.volume_root or "(none)",
            "experiment_folder": self.experiment_folder or "(none)",
            "platform": self.platform.name,
            "backend_store_uri": mask_uri(self.backend_store_uri),
            "registry_store_uri": mask_uri(self.registry_store_uri),
            "default_artifact_root": mask_uri(self.default_artifact_root),
            "artifacts_destination": mask_uri(self.artifacts_destination or "(none)"),
            "serve_artifacts": str(self.serve_artifacts).lower(),
            "static_prefix": self.static_prefix or "(none)",
            "allowed_hosts": ",".join(self.allowed_hosts),
            "bind": self.bind,
            "workers": str(self.workers),
            "threads": str(self.threads),
            "data_dir": str(self.data_dir),
            "auth": self.access.mode,
        }


class Values:
    """The table's view of an environment: each declared variable parsed by its kind, once,
    on first read (a `_FILE` secret is read only when a rule asks for it)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._parsed: dict[str, tuple[str, Any] | None] = {}

    def given(self, name: str) -> tuple[str, Any] | None:
        """(the variable that was set, its value), or None when unset; `name` must be a row."""
        if name not in self._parsed:
            row = _ROWS[name]
            found = next(((n, raw) for n in row.names if (raw := self._raw(n))), None)
            self._parsed[name] = found and (found[0], row.kind.parse(*found))
        return self._parsed[name]

    def get(self, name: str) -> Any:
        """The value, or the row's default when unset."""
        found = self.given(name)
        return found[1] if found else _ROWS[name].kind.parse(name, None)

    def _raw(self, name: str) -> str | None:
        value = (self._environ.get(name) or "").strip()
        return value or None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build validated settings from the environment (default: `os.environ`)."""
    environ = os.environ if environ is None else environ
    values = Values(environ)
    fields = {row.field: values.get(row.name) for row in SETTINGS if row.field}
    platform = config_rules.platform_of(environ)
    data_dir = fields["data_dir"]
    return Settings(
        **fields,
        **config_rules.stores(values, platform, data_dir),
        **config_rules.front_door(values, platform),
        **config_rules.capacity(values),
        platform=platform,
        access=config_rules.access(values, platform, data_dir),
    )


def unrecognised_settings(
    environ: Mapping[str, str], known_elsewhere: Iterable[str] = ()
) -> list[str]:
    """One warning line per MLFLOW_* variable neither this service nor MLflow reads."""
    known = {n for s in SETTINGS for n in s.names} | set(known_elsewhere)
    lines = []
    for name in sorted(environ):
        if name.startswith("MLFLOW_") and name not in known:
            guess = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            hint = f"; did you mean {guess[0]}?" if guess else "; see `mlflow-app config --table`"
            lines.append(f"{name} is not a setting of mlflow-app or MLflow and is ignored{hint}")
    return lines


def settings_table() -> str:
    """The settings as a Markdown table (docs/configuration.md and `mlflow-app config --help`)."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        name = f"`{s.name}`" + "".join(f" (alias `{a}`)" for a in s.aliases)
        rows.append(f"| {name} | `{s.documented_default}` | {s.description} |")
    return "\n".join(rows)
