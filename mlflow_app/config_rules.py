"""The rules that join settings: profile and stores, artifact root, access, hosts and proxies.

A row of the settings table parses one variable; these functions decide what several mean
together and what a platform (Databricks Apps, Cloud Run) implies, each returning the
`Settings` fields it owns.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mlflow_app.setting_kinds import ConfigError

if TYPE_CHECKING:
    from mlflow_app.config import Values

PROFILES = ("embedded", "databricks", "external")
AUTH_MODES = ("none", "basic", "trusted-header", "databricks-apps")
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
DATABRICKS_APPS_IDENTITY_FALLBACKS = ("X-Forwarded-Preferred-Username", "X-Forwarded-User")
VOLUME_DIRECTORY = "mlflow"  # where artifacts go when the setting names only the volume
_KNOWN_STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "databricks", "file")
_SCHEME_TYPOS = {
    "postgres": "postgresql",
    "pg": "postgresql",
    "psql": "postgresql",
    "mariadb": "mysql",
    "sqlite3": "sqlite",
}
_LOCAL_PEERS = ("127.0.0.1/32", "::1/128")
# Cloud Run's front end reaches the container from the link-local range, which nothing outside
# the host can use as a source address.
_CLOUD_RUN_PEERS = (*_LOCAL_PEERS, "169.254.0.0/16")
_PRIVATE_PEERS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "::1/128",
    "fc00::/7",
)
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
_VOLUME_FORM = "/Volumes/<catalog>/<schema>/<volume>[/<directory>]"
_WORKSPACE_PATH = re.compile(r"(/[^/\x00-\x1f]+)+")
_IDENTITY = re.compile(r"[^\s,;<>\"'\\\x00-\x1f\x7f]{1,254}")


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


def platform_of(environ: Any) -> Platform:
    def given(name: str) -> str | None:
        value = (environ.get(name) or "").strip()
        return value or None

    return Platform(given("DATABRICKS_APP_NAME"), given("DATABRICKS_HOST"), given("K_SERVICE"))


def stores(values: Values, platform: Platform, data_dir: Path) -> dict[str, Any]:
    """The profile, the tracking and registry store URIs, and where artifacts go."""
    backend = values.given("MLFLOW_BACKEND_STORE_URI") or values.given(
        "MLFLOW_BACKEND_STORE_URI_FILE"
    )
    registry = values.given("MLFLOW_REGISTRY_STORE_URI") or values.given(
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
    return {
        "profile": profile,
        "backend_store_uri": backend_uri,
        "registry_store_uri": _store_uri(*registry, registry=True) if registry else backend_uri,
        **_artifacts(values, profile, data_dir),
        "experiment_folder": _experiment_folder(values, profile, platform),
    }


def _artifacts(values: Values, profile: str, data_dir: Path) -> dict[str, Any]:
    root = values.get("MLFLOW_DEFAULT_ARTIFACT_ROOT")
    volume_root = _volume_root(root, profile)
    serve = values.get("MLFLOW_SERVE_ARTIFACTS")
    if serve is None:
        serve = profile != "databricks" or volume_root is not None
    if volume_root and serve:
        # Clients reach the volume through the proxy, with no Databricks credentials of their own.
        artifact_root, destination = "mlflow-artifacts:/", volume_root
    else:
        artifact_root = volume_root or root or _default_artifact_root(profile, serve, data_dir)
        destination = values.get("MLFLOW_ARTIFACTS_DESTINATION") or (
            str(data_dir / "artifacts") if serve else None
        )
    if artifact_root.startswith("mlflow-artifacts:") and not serve:
        raise ConfigError(
            "MLFLOW_DEFAULT_ARTIFACT_ROOT",
            f"'{artifact_root}' needs the artifact proxy, which is off",
            "set MLFLOW_SERVE_ARTIFACTS=true or point the root at a store",
        )
    return {
        "volume_root": volume_root,
        "default_artifact_root": artifact_root,
        "artifacts_destination": destination,
        "serve_artifacts": serve,
    }


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


def _experiment_folder(values: Values, profile: str, platform: Platform) -> str | None:
    raw = values.get("MLFLOW_APP_EXPERIMENT_FOLDER")
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


def access(values: Values, platform: Platform, data_dir: Path) -> AccessSettings:
    mode = values.get("MLFLOW_APP_AUTH")
    if values.get("MLFLOW_APP_DATABRICKS_ON_BEHALF_OF_USER"):
        raise ConfigError(
            "MLFLOW_APP_DATABRICKS_ON_BEHALF_OF_USER",
            "the user token Databricks Apps forwards carries only the app's user API scopes, "
            "none of which covers MLflow's REST API, so every call would be denied",
            "unset it: workspace calls run as the app's service principal, and who may open "
            "the app is its CAN USE permission",
        )
    if mode == "databricks-apps" and not platform.databricks_app_name:
        raise ConfigError(
            "MLFLOW_APP_AUTH",
            "databricks-apps trusts the Databricks Apps proxy, but DATABRICKS_APP_NAME is unset "
            "(not running on Databricks Apps)",
            "use trusted-header behind another authenticating proxy, or basic",
        )
    password = values.get("MLFLOW_AUTH_ADMIN_PASSWORD") or values.get(
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE"
    )
    if mode == "basic" and not password:
        raise ConfigError(
            "MLFLOW_AUTH_ADMIN_PASSWORD",
            "basic access control needs the admin's initial password",
            "set it, or MLFLOW_AUTH_ADMIN_PASSWORD_FILE to a file holding it",
        )
    admins = tuple(_admin(a) for a in values.get("MLFLOW_APP_AUTH_ADMINS"))
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
            else values.get("MLFLOW_APP_AUTH_HEADER")
        ),
        admins=admins,
        admin_username=values.get("MLFLOW_AUTH_ADMIN_USERNAME"),
        admin_password=password,
        default_permission=values.get("MLFLOW_APP_AUTH_DEFAULT_PERMISSION"),
        database_uri=values.get("MLFLOW_APP_AUTH_DATABASE_URI")
        or f"sqlite:///{data_dir / 'auth.db'}",
    )


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


def front_door(values: Values, platform: Platform) -> dict[str, Any]:
    """The Host names accepted, the proxies believed and the port listened on."""
    return {
        "allowed_hosts": _allowed_hosts(values, platform),
        "trusted_proxies": _networks(values.get("MLFLOW_APP_TRUSTED_PROXIES"), platform),
        "port": values.get("PORT") or 80,
    }


def _allowed_hosts(values: Values, platform: Platform) -> tuple[str, ...]:
    hosts = values.get("MLFLOW_SERVER_ALLOWED_HOSTS")
    if hosts:
        return hosts
    if values.given("MLFLOW_SERVER_ALLOWED_HOSTS"):
        raise ConfigError(
            "MLFLOW_SERVER_ALLOWED_HOSTS",
            "it lists no host",
            "list host names separated by commas, or unset it",
        )
    public: tuple[str, ...] = ()
    if platform.databricks_app_name:
        public = ("*.databricksapps.com", "*.databricksapps.com:*")
    elif platform.cloud_run_service:
        public = ("*.run.app", "*.run.app:*")
    return _LOCAL_HOSTS + public


def _networks(items: tuple[str, ...], platform: Platform) -> tuple[IPv4Network | IPv6Network, ...]:
    try:
        return tuple(ip_network(item, strict=False) for item in items or _default_proxies(platform))
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


def capacity(values: Values) -> dict[str, Any]:
    """Workers default to the CPUs we may use; each worker's pool to its threads."""
    return {
        "workers": values.get("MLFLOW_WORKERS") or max(2, available_cpus()),
        "pool_size": values.get("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE")
        or values.get("MLFLOW_APP_THREADS"),
    }


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


def uri_scheme(uri: str) -> str:
    """`postgresql+psycopg2://...` -> `postgresql`; `databricks-uc` -> `databricks-uc`."""
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


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
