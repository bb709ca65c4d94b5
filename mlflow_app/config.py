"""Settings: the one place that reads the environment.

`load_settings` turns environment variables into a frozen `Settings`, validating each value and
raising `ConfigError` with one line that names the setting and the fix. `SETTINGS` is the table
that documents every variable; `mlflow-app config` and the README render it.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class ConfigError(ValueError):
    """A setting has a value we cannot start with; the message says which and how to fix it."""

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        super().__init__(f"{setting}: {problem}; {fix}")
        self.setting = setting


@dataclass(frozen=True)
class Setting:
    """One documented environment variable."""

    name: str
    default: str
    description: str
    aliases: tuple[str, ...] = ()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MLFLOW_BACKEND_STORE_URI",
        "(derived)",
        "Tracking store URI: sqlite:///..., postgresql://..., mysql://... (PyMySQL), databricks. "
        "Unset: `databricks` on Databricks Apps, else SQLite under MLFLOW_APP_DATA_DIR.",
        aliases=("MLFLOW_TRACKING_URI",),
    ),
    Setting(
        "MLFLOW_BACKEND_STORE_URI_FILE",
        "",
        "File holding the backend store URI (a mounted secret); used when the URI is unset.",
    ),
    Setting(
        "MLFLOW_REGISTRY_STORE_URI_FILE",
        "",
        "File holding the registry store URI; used when the registry URI is unset.",
    ),
    Setting(
        "MLFLOW_REGISTRY_STORE_URI",
        "(derived)",
        "Model registry URI. Unset: `databricks-uc` on Databricks Apps, else the backend store.",
        aliases=("MLFLOW_REGISTRY_URI",),
    ),
    Setting(
        "MLFLOW_DEFAULT_ARTIFACT_ROOT",
        "mlflow-artifacts:/",
        "Artifact root for new experiments (s3://, gs://, or the proxy). In Databricks mode a "
        "UC volume (/Volumes/<catalog>/<schema>/<volume>[/<dir>] or <catalog>.<schema>.<volume>)"
        ": new experiments keep artifacts there, reached through the proxy. A volume without a "
        "directory (what app.yaml's `valueFrom` gives) means its `mlflow` directory.",
        aliases=("MLFLOW_ARTIFACT_ROOT",),
    ),
    Setting(
        "MLFLOW_ARTIFACTS_DESTINATION",
        "<MLFLOW_APP_DATA_DIR>/artifacts",
        "Where the artifact proxy stores files (local path, s3://, gs://).",
    ),
    Setting(
        "MLFLOW_SERVE_ARTIFACTS",
        "true",
        "Proxy artifact uploads and downloads through this server.",
    ),
    Setting(
        "MLFLOW_STATIC_PREFIX",
        "",
        "Path prefix for every route, e.g. /mlflow behind a path-routing proxy.",
    ),
    Setting(
        "MLFLOW_SERVER_ALLOWED_HOSTS",
        "(derived)",
        "Comma-separated Host headers to accept. Unset: localhost, private addresses and "
        "the platform's public host (*.databricksapps.com, *.run.app).",
    ),
    Setting(
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS",
        "",
        "Comma-separated other origins (https://app.example.com, or patterns with *) whose "
        "pages may write to this server. Same-origin requests always pass; * allows any.",
    ),
    Setting(
        "MLFLOW_APP_TRUSTED_PROXIES",
        "127.0.0.1/32,::1/128 (Databricks Apps: private ranges; Cloud Run: 169.254.0.0/16 too)",
        "Comma-separated addresses or CIDRs of the proxies in front: their X-Forwarded-Proto,"
        " -Host, -For, -Prefix and identity headers are believed; anyone else's are dropped "
        "or refused.",
    ),
    Setting(
        "MLFLOW_WORKERS",
        "CPUs the container may use (at least 2)",
        "gunicorn worker processes. The default reads the cgroup CPU quota and the CPU "
        "affinity, never the host's CPU count, which a container also sees.",
    ),
    Setting("MLFLOW_APP_THREADS", "4", "Threads per worker (gthread)."),
    Setting(
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE",
        "MLFLOW_APP_THREADS",
        "Database connections a worker keeps per store (MLflow's setting; tracking and "
        "registry each have a pool).",
    ),
    Setting(
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW",
        "1",
        "Connections a worker may open per store beyond the pool (the readiness check's).",
    ),
    Setting(
        "MLFLOW_APP_REPLICAS",
        "1",
        "Replicas sharing the database; the self-check warns when replicas x workers x pools "
        "cannot fit the database's max_connections.",
    ),
    Setting(
        "PORT",
        "80",
        "Port to listen on. DATABRICKS_APP_PORT takes precedence.",
        aliases=("DATABRICKS_APP_PORT",),
    ),
    Setting("MLFLOW_APP_HOST", "0.0.0.0", "Address to listen on."),
    Setting(
        "MLFLOW_APP_DATA_DIR",
        "./mlflow-data",
        "Directory for the embedded SQLite database and local artifacts.",
    ),
    Setting("MLFLOW_APP_HEALTH_PATH", "/healthz", "Liveness endpoint."),
    Setting("MLFLOW_APP_READY_PATH", "/readyz", "Readiness endpoint (JSON report per check)."),
    Setting(
        "MLFLOW_APP_READY_API_PATH",
        "/api/readyz",
        "Alias of the readiness endpoint under /api/, the only prefix where Databricks Apps "
        "accepts bearer tokens from outside.",
    ),
    Setting(
        "MLFLOW_APP_READINESS_CACHE_SECONDS",
        "5",
        "How long a readiness report is reused, so probes cannot overload the backend.",
    ),
    Setting(
        "MLFLOW_APP_CHECK_TIMEOUT_SECONDS",
        "10",
        "Time limit for each readiness or self-check probe.",
    ),
    Setting(
        "MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT",
        "10",
        "Seconds MLflow may spend retrying a throttled or failing Databricks call before the "
        "client gets the 429/503 (MLflow's own default is 500).",
    ),
    Setting(
        "MLFLOW_APP_MIGRATE",
        "auto",
        "Database schema at startup: auto creates or upgrades it (once, under a database lock), "
        "check stops startup if it is not current, off leaves it to MLflow.",
    ),
    Setting("MLFLOW_APP_METRICS", "true", "Record Prometheus metrics and serve them."),
    Setting("MLFLOW_APP_METRICS_PATH", "/metrics", "Prometheus exposition endpoint."),
    Setting(
        "MLFLOW_APP_METRICS_API_PATH",
        "/api/metrics",
        "Alias of the metrics endpoint under /api/, the only prefix where Databricks Apps "
        "accepts bearer tokens from outside.",
    ),
    Setting(
        "MLFLOW_APP_METRICS_DIR",
        "(new temporary directory)",
        "prometheus_client multiprocess directory; emptied when the server starts.",
    ),
    Setting(
        "MLFLOW_APP_START_DEGRADED",
        "false",
        "Start even when the self-check fails (readiness stays 503 until it passes).",
    ),
    Setting(
        "MLFLOW_APP_AUTH",
        "none",
        "Access control: none, basic (MLflow's users and per-resource permissions), "
        "trusted-header (identity from an authenticating proxy), databricks-apps "
        "(identity from the Databricks Apps proxy).",
    ),
    Setting(
        "MLFLOW_AUTH_ADMIN_USERNAME",
        "admin",
        "basic / trusted-header: the admin user created on first start (MLflow's setting).",
    ),
    Setting(
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "(required for basic)",
        "basic: the admin's initial password (MLflow's setting), or use the _FILE variant.",
    ),
    Setting(
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE",
        "",
        "File holding the admin's initial password (a mounted secret).",
    ),
    Setting(
        "MLFLOW_APP_AUTH_DEFAULT_PERMISSION",
        "READ",
        "Permission every user has on resources nobody granted them: READ, EDIT, MANAGE or "
        "NO_PERMISSIONS.",
    ),
    Setting(
        "MLFLOW_APP_AUTH_DATABASE_URI",
        "sqlite:///<MLFLOW_APP_DATA_DIR>/auth.db",
        "Where basic / trusted-header keep users and permissions; share it across replicas.",
    ),
    Setting(
        "MLFLOW_APP_AUTH_HEADER",
        "X-Forwarded-Email",
        "trusted-header: the header the authenticating proxy puts the user's identity in.",
    ),
    Setting(
        "MLFLOW_APP_AUTH_ADMINS",
        "",
        "trusted-header: comma-separated identities that are admins.",
    ),
    Setting(
        "MLFLOW_APP_DATABRICKS_ON_BEHALF_OF_USER",
        "false",
        "Refused when true: the user token Databricks Apps forwards carries only the app's user "
        "API scopes, and none of them covers MLflow's REST API, so every call would be denied.",
    ),
    Setting(
        "MLFLOW_APP_EXPERIMENT_FOLDER",
        "/Shared/<app name>",
        "Databricks mode: the workspace folder experiment names without a leading `/` live in "
        "(shown without it), and whose `Default` experiment is experiment 0. Unset: "
        "/Shared/<DATABRICKS_APP_NAME>, or /Shared/mlflow-app off Databricks Apps.",
    ),
    Setting(
        "MLFLOW_APP_CLIENT_TIMEOUT_SECONDS",
        "30",
        "Seconds a client has to send a request's headers, or between two reads of its body; "
        "also how long a connection that sends nothing stays open. Waiting costs no thread.",
    ),
    Setting(
        "MLFLOW_APP_GRACEFUL_TIMEOUT",
        "10",
        "Seconds a worker may finish in-flight requests after SIGTERM.",
    ),
    Setting("MLFLOW_APP_LOG_LEVEL", "info", "gunicorn and application log level."),
)

PROFILES = ("embedded", "databricks", "external")
_KNOWN_STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "databricks", "file")
_SCHEME_TYPOS = {
    "postgres": "postgresql",
    "pg": "postgresql",
    "psql": "postgresql",
    "mariadb": "mysql",
    "sqlite3": "sqlite",
}
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Platform:
    """What the environment tells us about where we run."""

    databricks_app_name: str | None
    databricks_host: str | None
    cloud_run_service: str | None

    @property
    def name(self) -> str:
        if self.databricks_app_name:
            return "databricks-apps"
        if self.cloud_run_service:
            return "cloud-run"
        return "generic"


AUTH_MODES = ("none", "basic", "trusted-header", "databricks-apps")
_PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
_LOCAL_PEERS = ("127.0.0.1/32", "::1/128")
# Cloud Run's front end reaches the container from the link-local range, which nothing outside
# the host can use as a source address.
_CLOUD_RUN_PEERS = (*_LOCAL_PEERS, "169.254.0.0/16")
DATABRICKS_APPS_IDENTITY_FALLBACKS = ("X-Forwarded-Preferred-Username", "X-Forwarded-User")
_PRIVATE_PEERS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "::1/128",
    "fc00::/7",
)


@dataclass(frozen=True)
class AccessSettings:
    """Who may call the service (see mlflow_app/access.py)."""

    mode: str
    identity_header: str
    admins: tuple[str, ...]
    admin_username: str
    admin_password: str | None = field(repr=False)
    default_permission: str
    database_uri: str

    @property
    def identity_headers(self) -> tuple[str, ...]:
        """Where the identity is read, first found wins. The Databricks Apps proxy sends no
        X-Forwarded-Email for service principals, only their user name and id."""
        if self.mode == "databricks-apps":
            return (self.identity_header, *DATABRICKS_APPS_IDENTITY_FALLBACKS)
        return (self.identity_header,)

    @property
    def uses_mlflow_auth(self) -> bool:
        """Whether MLflow's auth app (users, per-resource permissions) is in play."""
        return self.mode in ("basic", "trusted-header")


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


def mask_uri(uri: str) -> str:
    """Hide the password (and any token) in a URI so it can be logged or shown."""
    parts = urlsplit(uri)
    if parts.password is None and "token" not in parts.query.lower():
        return uri
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}"
    query = re.sub(r"(?i)(token|password|secret)=[^&]*", r"\1=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build validated settings from the environment (default: `os.environ`)."""
    env = _Env(os.environ if environ is None else environ)
    platform = Platform(
        databricks_app_name=env.get("DATABRICKS_APP_NAME"),
        databricks_host=env.get("DATABRICKS_HOST"),
        cloud_run_service=env.get("K_SERVICE"),
    )
    data_dir = Path(env.get("MLFLOW_APP_DATA_DIR") or "./mlflow-data").expanduser().resolve()
    backend = env.first("MLFLOW_BACKEND_STORE_URI", "MLFLOW_TRACKING_URI") or env.secret_file(
        "MLFLOW_BACKEND_STORE_URI_FILE"
    )
    registry = env.first("MLFLOW_REGISTRY_STORE_URI", "MLFLOW_REGISTRY_URI") or env.secret_file(
        "MLFLOW_REGISTRY_STORE_URI_FILE"
    )
    if backend:
        profile = "databricks" if uri_scheme(backend[1]) == "databricks" else "external"
        backend_uri = _store_uri(*backend)
    elif platform.databricks_app_name:
        profile, backend_uri = "databricks", "databricks"
        registry = registry or ("MLFLOW_REGISTRY_STORE_URI", "databricks-uc")
    else:
        profile, backend_uri = "embedded", f"sqlite:///{data_dir / 'mlflow.db'}"
    registry_uri = _store_uri(*registry, registry=True) if registry else backend_uri

    root = env.first("MLFLOW_DEFAULT_ARTIFACT_ROOT", "MLFLOW_ARTIFACT_ROOT")
    volume_root = _volume_root(root[1] if root else None, profile)
    serve_artifacts = env.boolean(
        "MLFLOW_SERVE_ARTIFACTS", default=profile != "databricks" or volume_root is not None
    )
    if volume_root and serve_artifacts:
        # Clients reach the volume through the proxy, with no Databricks credentials of their own.
        artifact_root, destination = "mlflow-artifacts:/", volume_root
    else:
        artifact_root = (
            volume_root
            or (root[1] if root else None)
            or _default_artifact_root(profile, serve_artifacts, data_dir)
        )
        destination = env.get("MLFLOW_ARTIFACTS_DESTINATION") or (
            str(data_dir / "artifacts") if serve_artifacts else None
        )
    if artifact_root.startswith("mlflow-artifacts:") and not serve_artifacts:
        raise ConfigError(
            "MLFLOW_DEFAULT_ARTIFACT_ROOT",
            f"'{artifact_root}' needs the artifact proxy, which is off",
            "set MLFLOW_SERVE_ARTIFACTS=true or point the root at a store",
        )

    threads = env.integer(
        "MLFLOW_APP_THREADS",
        default=4,
        low=1,
        high=64,
        fix="set it to the threads per worker, e.g. 4",
    )
    return Settings(
        profile=profile,
        volume_root=volume_root,
        experiment_folder=_experiment_folder(env, profile, platform),
        backend_store_uri=backend_uri,
        registry_store_uri=registry_uri,
        default_artifact_root=artifact_root,
        artifacts_destination=destination,
        serve_artifacts=serve_artifacts,
        static_prefix=_static_prefix(env.get("MLFLOW_STATIC_PREFIX") or ""),
        allowed_hosts=_allowed_hosts(env.get("MLFLOW_SERVER_ALLOWED_HOSTS"), platform),
        cors_allowed_origins=_list(env.get("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS")),
        trusted_proxies=_networks(env.get("MLFLOW_APP_TRUSTED_PROXIES"), platform),
        workers=env.integer(
            "MLFLOW_WORKERS",
            default=max(2, available_cpus()),
            low=1,
            high=64,
            fix="set it to the number of worker processes, e.g. 4",
        ),
        threads=threads,
        pool_size=env.integer(
            "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE",
            default=threads,
            low=1,
            high=1000,
            fix="set it to connections per worker, e.g. 4",
        ),
        max_overflow=env.integer(
            "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW",
            default=1,
            low=0,
            high=1000,
            fix="set it to extra connections, e.g. 1",
        ),
        replicas=env.integer(
            "MLFLOW_APP_REPLICAS",
            default=1,
            low=1,
            high=10000,
            fix="set it to the number of replicas, e.g. 3",
        ),
        host=env.get("MLFLOW_APP_HOST") or "0.0.0.0",
        port=_port(env),
        data_dir=data_dir,
        health_path=env.path("MLFLOW_APP_HEALTH_PATH", "/healthz"),
        ready_path=env.path("MLFLOW_APP_READY_PATH", "/readyz"),
        ready_api_path=env.path("MLFLOW_APP_READY_API_PATH", "/api/readyz"),
        readiness_cache_seconds=env.number("MLFLOW_APP_READINESS_CACHE_SECONDS", 5.0, 0, 3600),
        check_timeout_seconds=env.number("MLFLOW_APP_CHECK_TIMEOUT_SECONDS", 10.0, 0.1, 600),
        upstream_retry_seconds=env.integer(
            "MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT",
            default=10,
            low=0,
            high=3600,
            fix="set it to seconds, e.g. 10",
        ),
        migrate=env.choice("MLFLOW_APP_MIGRATE", "auto", ("auto", "check", "off")),
        metrics=env.boolean("MLFLOW_APP_METRICS", default=True),
        metrics_path=env.path("MLFLOW_APP_METRICS_PATH", "/metrics"),
        metrics_api_path=env.path("MLFLOW_APP_METRICS_API_PATH", "/api/metrics"),
        metrics_dir=Path(d).resolve() if (d := env.get("MLFLOW_APP_METRICS_DIR")) else None,
        start_degraded=env.boolean("MLFLOW_APP_START_DEGRADED", default=False),
        client_timeout=env.number("MLFLOW_APP_CLIENT_TIMEOUT_SECONDS", 30.0, 1, 3600),
        graceful_timeout=env.integer(
            "MLFLOW_APP_GRACEFUL_TIMEOUT",
            default=10,
            low=0,
            high=3600,
            fix="set it to seconds, e.g. 10",
        ),
        log_level=env.choice("MLFLOW_APP_LOG_LEVEL", "info", _LOG_LEVELS),
        platform=platform,
        access=_access(env, platform, data_dir),
    )


def _access(env: _Env, platform: Platform, data_dir: Path) -> AccessSettings:
    mode = env.choice("MLFLOW_APP_AUTH", "none", AUTH_MODES)
    _refuse_on_behalf_of_user(env)
    if mode == "databricks-apps" and not platform.databricks_app_name:
        raise ConfigError(
            "MLFLOW_APP_AUTH",
            "databricks-apps trusts the Databricks Apps proxy, but DATABRICKS_APP_NAME is unset "
            "(not running on Databricks Apps)",
            "use trusted-header behind another authenticating proxy, or basic",
        )
    password = env.get("MLFLOW_AUTH_ADMIN_PASSWORD")
    if password is None and (found := env.secret_file("MLFLOW_AUTH_ADMIN_PASSWORD_FILE")):
        password = found[1]
    if mode == "basic" and not password:
        raise ConfigError(
            "MLFLOW_AUTH_ADMIN_PASSWORD",
            "basic access control needs the admin's initial password",
            "set it, or MLFLOW_AUTH_ADMIN_PASSWORD_FILE to a file holding it",
        )
    admins = tuple(_admin(a) for a in _list(env.get("MLFLOW_APP_AUTH_ADMINS")))
    if mode == "trusted-header" and not admins:
        raise ConfigError(
            "MLFLOW_APP_AUTH_ADMINS",
            "trusted-header access control needs at least one admin identity",
            "set it to the admins' identities as the proxy sends them, e.g. ops@example.com",
        )
    return AccessSettings(
        mode=mode,
        identity_header=(
            "X-Forwarded-Email"
            if mode == "databricks-apps"
            else env.get("MLFLOW_APP_AUTH_HEADER") or "X-Forwarded-Email"
        ),
        admins=admins,
        admin_username=env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin",
        admin_password=password,
        default_permission=env.choice("MLFLOW_APP_AUTH_DEFAULT_PERMISSION", "READ", _PERMISSIONS),
        database_uri=env.get("MLFLOW_APP_AUTH_DATABASE_URI") or f"sqlite:///{data_dir / 'auth.db'}",
    )


def _refuse_on_behalf_of_user(env: _Env) -> None:
    if env.boolean("MLFLOW_APP_DATABRICKS_ON_BEHALF_OF_USER", default=False):
        raise ConfigError(
            "MLFLOW_APP_DATABRICKS_ON_BEHALF_OF_USER",
            "the user token Databricks Apps forwards carries only the app's user API scopes, "
            "none of which covers MLflow's REST API, so every call would be denied",
            "unset it: workspace calls run as the app's service principal, and who may open "
            "the app is its CAN USE permission",
        )


_WORKSPACE_PATH = re.compile(r"(/[^/\x00-\x1f]+)+")


def _experiment_folder(env: _Env, profile: str, platform: Platform) -> str | None:
    raw = env.get("MLFLOW_APP_EXPERIMENT_FOLDER")
    if profile != "databricks":
        if raw:
            raise ConfigError(
                "MLFLOW_APP_EXPERIMENT_FOLDER",
                "it applies only to a Databricks tracking store",
                "unset it, or set MLFLOW_BACKEND_STORE_URI=databricks",
            )
        return None
    folder = (raw or f"/Shared/{platform.databricks_app_name or 'mlflow-app'}").rstrip("/")
    if not _WORKSPACE_PATH.fullmatch(folder) or any(
        part in (".", "..") for part in folder.split("/")
    ):
        raise ConfigError(
            "MLFLOW_APP_EXPERIMENT_FOLDER",
            f"'{raw}' is not an absolute workspace folder",
            "set it to a folder such as /Shared/mlflow or /Users/<user>/mlflow",
        )
    return folder


_IDENTITY = re.compile(r"[^\s,;<>\"'\\\x00-\x1f\x7f]{1,254}")


def normal_identity(raw: str) -> str | None:
    """The identity a proxy sent, as one user: emails are case-folded (RFC 5321 lets the local
    part be case-sensitive, but no identity provider in front of MLflow issues two users that
    differ only by case); a list, a blank, a control character or an overlong value is None."""
    identity = raw.strip()
    if not _IDENTITY.fullmatch(identity):
        return None
    return identity.casefold() if "@" in identity else identity


def _admin(raw: str) -> str:
    identity = normal_identity(raw)
    if identity is None:
        raise ConfigError(
            "MLFLOW_APP_AUTH_ADMINS",
            f"'{raw[:100]}' is not a user identity",
            "list identities as the proxy sends them, e.g. ops@example.com",
        )
    return identity


def _list(raw: str | None) -> tuple[str, ...]:
    """A comma-separated setting's items."""
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def _networks(raw: str | None, platform: Platform) -> tuple[IPv4Network | IPv6Network, ...]:
    items = _list(raw) or _default_proxies(platform)
    try:
        return tuple(ip_network(item, strict=False) for item in items)
    except ValueError as error:
        raise ConfigError(
            "MLFLOW_APP_TRUSTED_PROXIES",
            str(error),
            "set it to comma-separated addresses or CIDRs, e.g. 10.0.0.0/8,127.0.0.1",
        ) from None


def _default_proxies(platform: Platform) -> tuple[str, ...]:
    """The proxy in front on each platform: Databricks Apps' sits at private addresses."""
    if platform.databricks_app_name:
        return _PRIVATE_PEERS
    if platform.cloud_run_service:
        return _CLOUD_RUN_PEERS
    return _LOCAL_PEERS


class _Env:
    """Typed, validating reads of an environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value.strip() if value is not None and value.strip() else None

    def first(self, *names: str) -> tuple[str, str] | None:
        """The first of `names` that is set, as (name, value)."""
        for name in names:
            if value := self.get(name):
                return name, value
        return None

    def secret_file(self, name: str) -> tuple[str, str] | None:
        """(name, content) of the file a `*_FILE` setting points to, e.g. a mounted secret."""
        path = self.get(name)
        if path is None:
            return None
        try:
            content = Path(path).read_text().strip()
        except OSError as error:
            raise ConfigError(
                name,
                f"cannot read '{path}' ({error.strerror})",
                "mount the secret file there or unset it",
            ) from None
        if not content:
            raise ConfigError(name, f"'{path}' is empty", "put the store URI in the file")
        return name, content

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.get(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(name, f"'{raw}' is not true or false", f"set {name}=true or false")

    def integer(self, name: str, default: int, low: int, high: int, fix: str) -> int:
        raw = self.get(name)
        if raw is None:
            return default
        if not re.fullmatch(r"\d+", raw) or not low <= int(raw) <= high:
            raise ConfigError(name, f"'{raw}' is not a whole number from {low} to {high}", fix)
        return int(raw)

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise ConfigError(
                name,
                f"'{raw}' is not a number from {low:g} to {high:g}",
                f"set {name} to seconds, e.g. {default:g}",
            )
        return value

    def path(self, name: str, default: str) -> str:
        raw = self.get(name) or default
        if not raw.startswith("/") or len(raw) < 2 or raw.endswith("/"):
            raise ConfigError(
                name, f"'{raw}' is not a URL path", f"set it to a path such as {default}"
            )
        return raw

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of `choices`, matched without regard to case; returned as spelled there."""
        raw = self.get(name) or default
        found = {c.lower(): c for c in choices}.get(raw.lower())
        if found is None:
            raise ConfigError(
                name, f"'{raw}' is not one of {', '.join(choices)}", f"set {name} to one of them"
            )
        return found


def uri_scheme(uri: str) -> str:
    """`postgresql+psycopg2://...` -> `postgresql`; `databricks-uc` -> `databricks-uc`."""
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


_VOLUME_FORM = "/Volumes/<catalog>/<schema>/<volume>[/<directory>]"
VOLUME_DIRECTORY = "mlflow"  # where artifacts go when the setting names only the volume


def _volume_root(raw: str | None, profile: str) -> str | None:
    """`/Volumes/c/s/v/d`, `dbfs:/Volumes/c/s/v/d` or `c.s.v` -> `dbfs:/Volumes/c/s/v[/d]`."""
    if raw is None or profile != "databricks":
        return None
    path = raw.removeprefix("dbfs:").rstrip("/")
    if re.fullmatch(r"[^./\s]+\.[^./\s]+\.[^./\s]+", path):  # a volume's full name
        path = "/Volumes/" + path.replace(".", "/")
    if not path.startswith("/Volumes"):
        return None  # another store (s3://, dbfs:/...): the workspace's business
    parts = path.split("/")[2:]
    if len(parts) < 3 or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(
            "MLFLOW_DEFAULT_ARTIFACT_ROOT",
            f"'{raw}' is not inside a Unity Catalog volume",
            f"set it to {_VOLUME_FORM}",
        )
    # MLflow refuses a volume's own root as an artifact location; it needs a path inside.
    return "dbfs:" + (path if len(parts) > 3 else f"{path}/{VOLUME_DIRECTORY}")


def _default_artifact_root(profile: str, serve_artifacts: bool, data_dir: Path) -> str:
    if serve_artifacts:
        return "mlflow-artifacts:/"
    if profile == "databricks":
        return ""  # the workspace chooses each experiment's artifact location
    return str(data_dir / "artifacts")


def _store_uri(name: str, uri: str, registry: bool = False) -> str:
    """Validate a tracking or registry store URI; a plain mysql:// gets the driver we ship."""
    if uri[:8].lower() == "mysql://":
        # SQLAlchemy's default for mysql:// is mysqlclient, which needs C libraries; recipes
        # write plain mysql:// and mean "MySQL", so it is served by PyMySQL.
        return "mysql+pymysql://" + uri[8:]
    scheme = uri_scheme(uri)
    if scheme in ("http", "https"):
        raise ConfigError(
            name,
            f"'{mask_uri(uri)}' is a server address, not a store",
            "set it to a database URI such as postgresql://user@host/db, "
            "or unset it to use the embedded SQLite store",
        )
    if scheme in _SCHEME_TYPOS:
        fixed = _SCHEME_TYPOS[scheme] + uri[len(scheme) :]
        raise ConfigError(
            name, f"'{mask_uri(uri)}' is not a SQLAlchemy URI", f"did you mean {mask_uri(fixed)}?"
        )
    known = _KNOWN_STORE_SCHEMES + (("databricks-uc",) if registry else ())
    if scheme not in known:
        raise ConfigError(
            name,
            f"'{mask_uri(uri)}' has no supported scheme",
            "use sqlite:///path, postgresql://..., mysql://..., or databricks",
        )
    if scheme in ("sqlite", "postgresql", "mysql", "mssql") and "://" not in uri:
        raise ConfigError(
            name, f"'{mask_uri(uri)}' is missing '://'", f"write it as {scheme}://..."
        )
    return uri


def _static_prefix(raw: str) -> str:
    if raw and (not raw.startswith("/") or raw.endswith("/") or "{" in raw or "}" in raw):
        raise ConfigError(
            "MLFLOW_STATIC_PREFIX",
            f"'{raw}' is not a path prefix",
            "start it with '/', end it without '/', e.g. /mlflow",
        )
    return raw


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: the fewest of its affinity and its cgroup quota (v2
    `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up."""
    counts = [len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None]
    counts.append(os.cpu_count())
    quota = _cgroup_quota(cgroup)
    if quota is not None:
        counts.append(quota)
    return max(1, min(c for c in counts if c))


def _cgroup_quota(cgroup: Path) -> int | None:
    try:
        fields = (cgroup / "cpu.max").read_text().split()
    except OSError:
        try:
            fields = [
                (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip(),
                (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip(),
            ]
        except OSError:
            return None
    if len(fields) != 2 or not fields[0].isdigit() or not fields[1].isdigit():
        return None  # "max" (v2) or -1 (v1): no quota
    quota, period = int(fields[0]), int(fields[1])
    return max(1, -(-quota // period)) if period else None


def _port(env: _Env) -> int:
    fix = "set PORT to a free port such as 8080"
    for name in ("DATABRICKS_APP_PORT", "PORT"):
        if env.get(name) is not None:
            return env.integer(name, default=80, low=1, high=65535, fix=fix)
    return 80


# MLflow's own defaults (loopback and private ranges) keep probes and port-forwards working;
# the platform's public host is added because its proxy forwards the public Host header.
_LOCAL_HOSTS = (
    "localhost",
    "localhost:*",
    "127.0.0.1",
    "127.0.0.1:*",
    "[::1]",
    "[[]::1]:*",
    "0.0.0.0",
    "0.0.0.0:*",
    "10.*",
    "192.168.*",
    "fc00:*",
    "fd00:*",
    *(f"172.{i}.*" for i in range(16, 32)),
)


def _allowed_hosts(raw: str | None, platform: Platform) -> tuple[str, ...]:
    if raw:
        hosts = tuple(h.strip() for h in raw.split(",") if h.strip())
        if not hosts:
            raise ConfigError(
                "MLFLOW_SERVER_ALLOWED_HOSTS",
                "it lists no host",
                "list host names separated by commas, or unset it",
            )
        return hosts
    public: tuple[str, ...] = ()
    if platform.databricks_app_name:
        public = ("*.databricksapps.com", "*.databricksapps.com:*")
    elif platform.cloud_run_service:
        public = ("*.run.app", "*.run.app:*")
    return _LOCAL_HOSTS + public


def unrecognised_settings(
    environ: Mapping[str, str], known_elsewhere: Iterable[str] = ()
) -> list[str]:
    """One warning line per MLFLOW_* variable neither this service nor MLflow reads."""
    known = {n for s in SETTINGS for n in (s.name, *s.aliases)} | set(known_elsewhere)
    lines = []
    for name in sorted(environ):
        if name.startswith("MLFLOW_") and name not in known:
            guess = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            hint = f"; did you mean {guess[0]}?" if guess else "; see `mlflow-app config --table`"
            lines.append(f"{name} is not a setting of mlflow-app or MLflow and is ignored{hint}")
    return lines


def settings_table() -> str:
    """The settings as a Markdown table (README and `mlflow-app config --help`)."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        name = f"`{s.name}`" + "".join(f" (alias `{a}`)" for a in s.aliases)
        rows.append(f"| {name} | `{s.default}` | {s.description} |")
    return "\n".join(rows)
