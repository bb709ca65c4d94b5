"""Access control, chosen by MLFLOW_APP_AUTH: who may call the service, and as whom.

`AccessControl` is the outer gate: every request but the health endpoints needs an identity,
identity headers count only from trusted proxies (`front_door.ForwardedHeaders` decides which
peers are), and every 401/403 (ours or MLflow's) leaves as MLflow's JSON error, counted by
reason. Per-resource permissions (basic, trusted-header) are MLflow's own auth app
(`mlflow.server.auth`), installed in-process by `install_mlflow_auth`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cachetools import TTLCache
from flask import Flask, Response
from werkzeug.datastructures import Authorization

from mlflow_app.config import AccessSettings
from mlflow_app.config_rules import normal_identity
from mlflow_app.errors import error_response, json_error
from mlflow_app.front_door import TRUSTED_PEER_KEY
from mlflow_app.metrics import ACCESS_DENIALS
from mlflow_app.store_environment import AUTH_CACHE_SECONDS
from mlflow_app.wsgi_types import StartResponse, WSGIApp, WSGIEnviron

_access: AccessSettings | None = None  # set by install_mlflow_auth, read by MLflow's auth hook
_admins: frozenset[str] = frozenset()
_USER_LIST_PATHS = ("/api/2.0/mlflow/users/list", "/ajax-api/2.0/mlflow/users/list")


def install_mlflow_auth(access: AccessSettings, mlflow_app: Flask) -> None:
    """MLflow's auth app on MLflow's Flask app: users, permissions, their APIs and hooks."""
    global _access, _admins
    _access = access
    _admins = frozenset(access.admins)  # normalised by config
    from mlflow.server.auth import create_app

    create_app(mlflow_app)
    mlflow_app.before_request(only_admins_list_users)


def reconnect_after_fork() -> None:
    """MLflow's auth store connects while the app is preloaded in gunicorn's master; a worker
    that reused those sockets would share them with its siblings (on PostgreSQL: psycopg's
    `prepared statement "_pg3_0" already exists`, and users who cannot sign in). Each worker
    drops the inherited connections, without closing them for the others, and opens its own."""
    if _access is None or not _access.uses_mlflow_auth:
        return
    from mlflow.server.auth import store

    for engine in (store.engine, getattr(store, "read_engine", None)):
        if engine is not None:
            engine.dispose(close=False)


def only_admins_list_users() -> Response | None:
    """MLflow lets every user list all usernames and admin flags (in trusted-header mode,
    everyone's email); here only admins may. Runs after MLflow's auth authenticated."""
    from flask import request
    from mlflow.server.auth import authenticate_request, store

    if not request.path.endswith(_USER_LIST_PATHS):
        return None
    username = authenticate_request().username
    if store.get_user(username).is_admin:
        return None
    ACCESS_DENIALS.labels(_access.mode if _access else "basic", "forbidden").inc()
    return error_response(403, "PERMISSION_DENIED", "Only admins may list users.")


def protect_fastapi_routes(asgi_app: Any) -> None:
    """MLflow's permission middleware for the routes only its FastAPI app serves."""
    from mlflow.server.auth import add_fastapi_permission_middleware

    add_fastapi_permission_middleware(asgi_app)


def authenticate_trusted_header() -> Authorization:
    """MLflow auth's `authorization_function` for trusted-header: the proxy's identity.

    `AccessControl` has already refused requests without the header or from untrusted peers.
    Users are created on first sight, with a random password nobody knows.
    """
    from flask import request

    assert _access is not None
    username = request.headers[_access.identity_header]  # normalised by AccessControl
    _provision(username, is_admin=username in _admins)
    return Authorization("basic", {"username": username, "password": ""})


_provisioned: set[str] = set()


def _provision(username: str, is_admin: bool) -> None:
    if username in _provisioned:
        return
    from mlflow.server.auth import store

    if not store.has_user(username):
        try:
            store.create_user(username, secrets.token_urlsafe(32), is_admin=is_admin)
        except Exception:  # another worker created it first
            if not store.has_user(username):
                raise
    elif store.get_user(username).is_admin != is_admin:
        store.update_user(username, is_admin=is_admin)
    _provisioned.add(username)


class AccessControl:
    """The outer gate; see the module docstring."""

    def __init__(
        self,
        app: WSGIApp,
        access: AccessSettings,
        open_paths: Iterable[str],
        own_paths: Iterable[str],
    ) -> None:
        self.app = app
        self.access = access
        self.identity_key = _environ_key(access.identity_header)
        self.identity_keys = tuple(_environ_key(h) for h in access.identity_headers)
        self.open_paths = frozenset(open_paths)  # health: platform probes carry no identity
        self.own_paths = frozenset(own_paths)  # served outside MLflow (metrics)
        self.passwords = _PasswordCache()

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in self.open_paths:
            return self.app(environ, start_response)
        refusal = self.refusal(environ, path)
        if refusal is not None:
            return self.deny(start_response, *refusal)
        return self.answer_denials_in_json(environ, start_response)

    def refusal(self, environ: WSGIEnviron, path: str) -> tuple[int, str, str] | None:
        """(status, reason label, message) when the request may not go on."""
        if self.access.mode == "basic":
            if path in self.own_paths or _mlflow_leaves_unprotected(path):
                return self.check_password(environ)
            return None  # MLflow's auth app authenticates everything else
        header = self.access.identity_header
        identity = next(filter(None, (environ.get(k, "").strip() for k in self.identity_keys)), "")
        if not identity:
            names = " or ".join(self.access.identity_headers)
            return 401, "no_identity", f"No {names} header: sign in through the proxy."
        if not environ.get(TRUSTED_PEER_KEY, False):
            return (
                401,
                "untrusted_peer",
                f"{header} is accepted only from a trusted proxy (MLFLOW_APP_TRUSTED_PROXIES).",
            )
        normal = normal_identity(identity)
        if normal is None:
            return 400, "bad_identity", f"{header} is not a single user identity."
        environ[self.identity_key] = normal  # one user, however the proxy spelled it
        return None

    def check_password(self, environ: WSGIEnviron) -> tuple[int, str, str] | None:
        credentials = Authorization.from_header(environ.get("HTTP_AUTHORIZATION"))
        if credentials is None or credentials.type != "basic":
            return 401, "no_identity", "Sign in with your MLflow username and password."
        if not self.passwords.valid(credentials.username or "", credentials.password or ""):
            return 401, "bad_credentials", "Wrong username or password."
        return None

    def answer_denials_in_json(
        self, environ: WSGIEnviron, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Pass the request on; a 401/403 that is not JSON (MLflow auth's plain text) is
        replaced by MLflow's JSON error."""
        denied: list[tuple[int, list]] = []
        started: list[bool] = []

        def start(status: str, headers: list, exc_info: Any = None):
            code = int(status[:3])
            if code in (401, 403) and not _is_json(headers):
                denied.append((code, headers))
                return lambda data: None
            if code in (401, 403):
                ACCESS_DENIALS.labels(self.access.mode, _reason(code)).inc()
            started.append(True)
            return start_response(status, headers, exc_info)

        body = self.app(environ, start)
        if not started and not denied:
            body = _started(body)  # an ASGI response starts with its first chunk
        if denied:
            _close(body)
            code, headers = denied[0]
            challenge = [(k, v) for k, v in headers if k.lower() == "www-authenticate"]
            message = (
                "Sign in with your MLflow username and password."
                if code == 401
                else "You do not have permission for this resource."
            )
            return self.deny(start_response, code, _reason(code), message, challenge)
        return body

    def deny(
        self,
        start_response: StartResponse,
        status: int,
        reason: str,
        message: str,
        extra_headers: list | None = None,
    ) -> list[bytes]:
        ACCESS_DENIALS.labels(self.access.mode, reason).inc()
        code = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}.get(
            status, "INVALID_PARAMETER_VALUE"
        )
        if status == 401 and self.access.mode == "basic" and not extra_headers:
            extra_headers = [("WWW-Authenticate", 'Basic realm="mlflow"')]
        return json_error(start_response, status, code, message, extra_headers)


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _reason(status: int) -> str:
    return "bad_credentials" if status == 401 else "forbidden"


def _mlflow_leaves_unprotected(path: str) -> bool:
    from mlflow.server.auth import is_unprotected_route

    return is_unprotected_route(path)


def _is_json(headers: list) -> bool:
    return any(k.lower() == "content-type" and v.startswith("application/json") for k, v in headers)


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if callable(close):
        close()


def _started(body: Iterable[bytes]) -> Iterable[bytes]:
    """Pull the first chunk, so start_response has been called; keep the rest and close."""
    iterator = iter(body)
    first = next(iterator, None)

    def chain() -> Iterator[bytes]:
        try:
            if first is not None:
                yield first
            yield from iterator
        finally:
            _close(body)

    return chain()


class _PasswordCache:
    """Checked passwords, remembered for a minute: the hash costs ~0.1 s, and the UI loads
    dozens of static files. MLflow's own check runs with the same cache time (see
    `store_environment.mlflow_auth_config`). Keys are HMACs under a secret of this process,
    as MLflow's auth cache keys them, so the cache holds nothing a password can be guessed from
    offline."""

    max_entries = 10_000

    def __init__(self, timer: Callable[[], float] = time.monotonic) -> None:
        self._secret = secrets.token_bytes(32)
        self._valid: TTLCache = TTLCache(self.max_entries, float(AUTH_CACHE_SECONDS), timer)
        self._lock = threading.Lock()

    def valid(self, username: str, password: str) -> bool:
        key = hmac.new(self._secret, f"{username}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if key in self._valid:
                return True
        from mlflow.server.auth import store

        if not store.authenticate_user(username, password):
            return False
        with self._lock:
            self._valid[key] = True
        return True
