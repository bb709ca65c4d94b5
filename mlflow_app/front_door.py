"""The front door: the address the user reached, which hosts may be named, which origins may write.

`ForwardedHeaders` believes `X-Forwarded-Proto/-Host/-For/-Prefix` only from trusted proxies
(werkzeug's ProxyFix does the rewriting) and drops them from anyone else. `HostAndOrigin` then
refuses a `Host` nobody configured and a state-changing request from another origin, with
MLflow's JSON 403; a same-origin request passes even though MLflow's own guard would refuse it.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address
from urllib.parse import urlsplit

from werkzeug.middleware.proxy_fix import ProxyFix

from mlflow_app.errors import json_error
from mlflow_app.metrics import FRONT_DOOR_REFUSALS
from mlflow_app.wsgi_types import StartResponse, WSGIApp, WSGIEnviron

log = logging.getLogger("mlflow_app.front_door")

# Set by ForwardedHeaders: whether the peer is a trusted proxy (access control reads it too).
TRUSTED_PEER_KEY = "mlflow_app.trusted_peer"
_FORWARDED = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_FORWARDED",
)
_PEER_CACHE_SIZE = 4096
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class ForwardedHeaders:
    """Rewrite scheme, host, client address and script root from a trusted proxy's headers."""

    def __init__(self, app: WSGIApp, trusted_proxies: Iterable[IPv4Network | IPv6Network]) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)
        # One proxy hop: the value the trusted proxy appended or set is the last one.
        self.proxy_fix = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)
        self._peers: dict[str, bool] = {}  # a few proxies and clients, asked on every request

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        trusted = self.is_trusted(environ.get("REMOTE_ADDR", ""))
        environ[TRUSTED_PEER_KEY] = trusted
        forwarded = [key for key in _FORWARDED if key in environ]
        if trusted and forwarded:
            return self.proxy_fix(environ, start_response)
        for key in forwarded:  # nobody downstream (MLflow included) may believe them
            del environ[key]
        return self.app(environ, start_response)

    def is_trusted(self, address: str) -> bool:
        trusted = self._peers.get(address)
        if trusted is None:
            trusted = self._peer_in_networks(address)
            if len(self._peers) >= _PEER_CACHE_SIZE:
                self._peers.clear()
            self._peers[address] = trusted
        return trusted

    def _peer_in_networks(self, address: str) -> bool:
        try:
            peer = ip_address(address)
        except ValueError:
            return False
        return any(peer in network for network in self.trusted_proxies)


class HostAndOrigin:
    """Refuse unconfigured hosts and cross-origin writes; see the module docstring."""

    def __init__(
        self,
        app: WSGIApp,
        allowed_hosts: Iterable[str],
        allowed_origins: Iterable[str],
        exempt_paths: Iterable[str],
    ) -> None:
        self.app = app
        self.allowed_hosts = tuple(h.lower() for h in allowed_hosts)
        self.allowed_origins = tuple(allowed_origins)
        # Probes and scrapers address a replica by its IP, whatever names users type.
        self.exempt_paths = frozenset(exempt_paths)

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.exempt_paths:
            return self.app(environ, start_response)
        host = environ.get("HTTP_HOST", "")
        if not host_allowed(host, self.allowed_hosts):
            log.warning(
                "refused Host %r: not in MLFLOW_SERVER_ALLOWED_HOSTS; add it there if users "
                "reach the service by that name",
                host[:200],
            )
            return self.refuse(start_response, "host_not_allowed", "This Host is not served here.")
        origin = environ.get("HTTP_ORIGIN")
        if origin is None or environ.get("REQUEST_METHOD", "GET") not in _STATE_CHANGING:
            return self.app(environ, start_response)
        if same_origin(origin, environ):
            # Not a cross-origin request at all; without Origin, MLflow's own guard (which
            # exempts only localhost) lets it through, and no CORS headers are needed.
            del environ["HTTP_ORIGIN"]
            return self.app(environ, start_response)
        if "*" in self.allowed_origins or matches_any(origin, self.allowed_origins):
            return self.app(environ, start_response)
        log.warning(
            "refused a %s from origin %r: another site; list it in "
            "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS if it may write",
            environ.get("REQUEST_METHOD"),
            origin[:200],
        )
        return self.refuse(
            start_response,
            "cross_origin",
            "Cross-origin request refused: the page's origin may not change this server "
            "(MLFLOW_SERVER_CORS_ALLOWED_ORIGINS lists the origins that may).",
        )

    def refuse(self, start_response: StartResponse, reason: str, message: str) -> list[bytes]:
        FRONT_DOOR_REFUSALS.labels(reason).inc()
        return json_error(start_response, 403, "PERMISSION_DENIED", message)


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """MLflow's rule for its host list, and a name without a port allows that name on any
    port (users list `mlflow.example.com`, a proxy on :8443 sends `mlflow.example.com:8443`)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return matches_any(host.lower(), patterns) or matches_any(name.lower(), patterns)


def matches_any(value: str, patterns: Iterable[str]) -> bool:
    """MLflow's rule for its host and origin lists: exact, or an fnmatch pattern with `*`."""
    return bool(value) and any(
        fnmatch.fnmatch(value, p) if "*" in p else value == p for p in patterns
    )


def same_origin(origin: str, environ: WSGIEnviron) -> bool:
    """Whether `origin` is the scheme, host and port this request was addressed to."""
    reached = _origin_key(f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST')}")
    return reached is not None and _origin_key(origin) == reached


def _origin_key(url: str) -> tuple[str, str, str] | None:
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not host or scheme not in _DEFAULT_PORTS:
        return None
    return scheme, host.lower(), str(port) if port else _DEFAULT_PORTS[scheme]
