"""The stand-in Databricks Apps runtime and proxy: it runs what was deployed, behind a front door.

Runtime: a deployment snapshots the source folder, refuses a requirements.txt the platform
would resolve to other versions than this machine runs, and starts app.yaml's `command` with
app.yaml's `env` (valueFrom resolved from the app's resources) and what Apps injects: the port,
the app name, the service principal's OAuth credentials and DATABRICKS_HOST without a scheme.
Proxy: one TLS listener for every app host. Bearer tokens count only under /api/ and only OAuth
tokens; a browser without a session is redirected to a login page; the app gets a rewritten
Host and the X-Forwarded-* headers the public documentation lists.
"""

from __future__ import annotations

import ctypes
import functools
import html
import http.client
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import quote, urlsplit

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.service_process import free_port

WORKSPACE_ID = "7000000001"
APPS_DOMAIN = "aws.databricksapps.com"
SESSION_COOKIE = "__Host-databricksapps"
# What Databricks Apps' Python environment has before requirements.txt is installed (its
# "system environment" page); pip keeps these when a requirement's range already allows them.
PREINSTALLED = {
    "databricks-sql-connector": "3.4.0",
    "databricks-sdk": "0.33.0",
    "mlflow-skinny": "2.16.2",
    "flask": "3.0.3",
    "fastapi": "0.115.0",
    "uvicorn": "0.30.6",
    "gunicorn": "23.0.0",
    "streamlit": "1.38.0",
    "dash": "2.18.1",
    "gradio": "4.44.0",
    "plotly": "5.24.1",
}
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
}


def app_host(name: str) -> str:
    return f"{name}-{WORKSPACE_ID}.{APPS_DOMAIN}"


def serve_tls(app: Callable, port: int, cert: Path, key: Path) -> None:
    """Serve a WSGI app over HTTPS on 127.0.0.1 from a daemon thread."""
    server = make_server("127.0.0.1", port, app, threaded=True, ssl_context=(str(cert), str(key)))
    threading.Thread(target=server.serve_forever, daemon=True, name=f"tls-{port}").start()


# --- requirements.txt as the platform would install it ----------------------------------------
def requirements_problem(text: str) -> str | None:
    """Why the platform's pip would not give this app the versions installed here, or None.

    The stand-in cannot install packages, so it runs the app with this machine's; it refuses
    what would run with other versions on the real platform rather than hide the difference.
    """
    pinned: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            return f"pip cannot parse requirements.txt line {line!r}"
        name = _canonical(requirement.name)
        installed = _installed_version(name)
        if installed is None:
            return f"{name} is not installable here"
        exact = [s for s in requirement.specifier if s.operator == "=="]
        if not exact or exact[0].version != installed:
            kept = PREINSTALLED.get(name)
            if kept and requirement.specifier.contains(kept):
                return f"pip keeps the pre-installed {name} {kept} (tests ran {installed}): {line}"
            return f"{line} is not pinned to the tested version {name}=={installed}"
        pinned[name] = installed
    for name in _closure(pinned):
        kept = PREINSTALLED.get(name)
        if name not in pinned and kept and kept != _installed_version(name):
            return (
                f"{name} is not in requirements.txt, so pip keeps the pre-installed {kept} "
                f"(tests ran {_installed_version(name)})"
            )
    return None


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _closure(roots: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen or _installed_version(name) is None:
            continue
        seen.add(name)
        for raw in metadata.requires(name) or []:
            requirement = Requirement(raw)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(_canonical(requirement.name))
    return seen


# --- the runtime --------------------------------------------------------------------------------
@dataclass
class Running:
    process: subprocess.Popen
    port: int
    log: Path


@dataclass
class AppRuntime:
    """Starts and stops deployed apps; `lock` is the workspace's, guarding the app records."""

    root: Path
    workspace_host: str  # host:port, no scheme, as Apps injects DATABRICKS_HOST
    ca_bundle: Path
    lock: threading.Lock
    prepare_seconds: float = 1.0
    running: dict[str, Running] = field(default_factory=dict)

    def deploy(self, app: dict, deployment: dict, files: dict[str, bytes]) -> None:
        threading.Thread(
            target=self._deploy, args=(app, deployment, files), daemon=True, name="deploy"
        ).start()

    def _deploy(self, app: dict, deployment: dict, files: dict[str, bytes]) -> None:
        time.sleep(self.prepare_seconds)
        if deployment["status"]["state"] != "IN_PROGRESS":
            return  # cancelled by a stop
        folder = self.root / "apps" / app["name"] / deployment["deployment_id"]
        for relative, content in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(content)
        if not (folder / "app.yaml").is_file():
            return self._fail(app, deployment, "app.yaml not found in source code path.")
        self._status(deployment, "IN_PROGRESS", "Installing packages from requirements.txt.")
        requirements = folder / "requirements.txt"
        text = requirements.read_text() if requirements.is_file() else ""
        if problem := requirements_problem(text):
            return self._fail(app, deployment, f"Error installing requirements: {problem}")
        try:
            spec = yaml.safe_load((folder / "app.yaml").read_text()) or {}
            env = self.environment(app, spec)
        except (ValueError, yaml.YAMLError) as error:
            return self._fail(app, deployment, f"Error reading app.yaml: {error}")
        self.stop(app["name"])
        self._status(deployment, "IN_PROGRESS", "Starting app with command from app.yaml.")
        with self.lock:
            app["app_status"] = {"state": "DEPLOYING", "message": "App is being deployed."}
        running = self._start(spec.get("command") or ["python", "app.py"], folder, env)
        self.running[app["name"]] = running
        if self._listening(running):
            with self.lock:
                deployment["status"] = {"state": "SUCCEEDED", "message": "App started successfully"}
                app["active_deployment"] = deployment
                app.pop("pending_deployment", None)
                app["app_status"] = {"state": "RUNNING", "message": "App is running"}
            return None
        tail = running.log.read_text(errors="replace").strip().splitlines()[-3:]
        self.stop(app["name"])
        return self._fail(app, deployment, "App crashed unexpectedly: " + " | ".join(tail))

    def environment(self, app: dict, spec: dict) -> dict[str, str]:
        resources = {r["name"]: r for r in app.get("resources", [])}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "PYTHONUNBUFFERED": "1",
            # The platform's own trust store; here, the CA that signed the stand-in's cert.
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
            "SSL_CERT_FILE": str(self.ca_bundle),
        }
        for item in spec.get("env") or []:
            if "valueFrom" in item:
                resource = resources.get(item["valueFrom"])
                if resource is None:
                    raise ValueError(
                        f"no resource with key {item['valueFrom']!r} for {item['name']}"
                    )
                env[item["name"]] = _resource_value(resource)
            else:
                env[item["name"]] = str(item.get("value", ""))
        env.update(
            DATABRICKS_APP_NAME=app["name"],
            DATABRICKS_APP_PORT=str(free_port()),
            DATABRICKS_WORKSPACE_ID=WORKSPACE_ID,
            DATABRICKS_HOST=self.workspace_host,
            DATABRICKS_CLIENT_ID=app["service_principal_client_id"],
            DATABRICKS_CLIENT_SECRET=app["_client_secret"],
        )
        return env

    def _start(self, command: list[str], folder: Path, env: dict[str, str]) -> Running:
        log = folder.with_suffix(".log")
        with log.open("wb") as out:
            process = _spawner().spawn(
                command,
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return Running(process, int(env["DATABRICKS_APP_PORT"]), log)

    @staticmethod
    def _listening(running: Running, timeout: float = 180) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and running.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.3)
        return False

    def stop(self, name: str) -> None:
        running = self.running.pop(name, None)
        if running is None or running.process.poll() is not None:
            return
        os.killpg(running.process.pid, signal.SIGTERM)
        try:
            running.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait(timeout=10)

    def stop_later(self, name: str) -> None:
        threading.Thread(target=self.stop, args=(name,), daemon=True, name="stop").start()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def port(self, name: str) -> int | None:
        running = self.running.get(name)
        return running.port if running and running.process.poll() is None else None

    def _status(self, deployment: dict, state: str, message: str) -> None:
        with self.lock:
            deployment["status"] = {"state": state, "message": message}

    def _fail(self, app: dict, deployment: dict, message: str) -> None:
        with self.lock:
            deployment["status"] = {"state": "FAILED", "message": message}
            app.pop("pending_deployment", None)
            app["app_status"] = {"state": "CRASHED", "message": message}


def _resource_value(resource: dict) -> str:
    """What `valueFrom` gives for a resource: a volume's path, else the securable's name."""
    securable = resource.get("uc_securable") or {}
    if securable.get("securable_type") == "VOLUME":
        return "/Volumes/" + securable["securable_full_name"].replace(".", "/")
    if securable:
        return securable["securable_full_name"]
    raise ValueError(f"resource {resource.get('name')!r} has no value the stand-in knows")


def _die_with_parent() -> None:
    # The app must not outlive the stand-in when a test run is interrupted.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Spawner:
    """Starts processes from one thread that lives as long as the stand-in: the kernel's
    parent-death signal follows the thread that forked, not the process."""

    def __init__(self) -> None:
        self._requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve, daemon=True, name="spawner").start()

    def spawn(self, *args: object, **kwargs: object) -> subprocess.Popen:
        answer: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((args, kwargs, answer))
        outcome = answer.get()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _serve(self) -> None:
        while True:
            args, kwargs, answer = self._requests.get()
            try:
                answer.put(subprocess.Popen(*args, **kwargs))
            except OSError as error:
                answer.put(error)


@functools.cache
def _spawner() -> _Spawner:
    return _Spawner()  # in the process that serves (gunicorn's worker), not the one that forks


# --- the proxy ----------------------------------------------------------------------------------
@dataclass
class Caller:
    principal: str
    is_user: bool


@dataclass
class AppsProxy:
    """The front door of every app: authentication, then a forwarded request to the app."""

    apps: dict[str, dict]
    runtime: AppRuntime
    lock: threading.Lock
    token_principal: Callable[[str], str | None]  # OAuth access token -> principal, or None
    is_personal_access_token: Callable[[str], bool]
    mint_token: Callable[[str, list[str]], str]  # principal, scopes -> access token
    users: set[str]
    sessions: dict[str, str] = field(default_factory=dict)  # cookie value -> user

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        name = self._app_name(request.host)
        with self.lock:
            app = self.apps.get(name or "")
        if app is None:
            return _page(404, "App not found", f"No app at {request.host}.")(
                environ, start_response
            )
        if request.path.startswith("/.auth/"):
            return self.login(request)(environ, start_response)
        caller, refusal = self.authenticate(request)
        if refusal is not None:
            return refusal(environ, start_response)
        port = self.runtime.port(app["name"])
        compute = app.get("compute_status", {}).get("state")
        if port is None or compute != "ACTIVE":
            return _page(503, "App Not Available", f"{app['name']} is not running ({compute}).")(
                environ, start_response
            )
        return self.forward(request, environ, start_response, app, caller, port)

    @staticmethod
    def _app_name(host: str) -> str | None:
        hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host
        suffix = f"-{WORKSPACE_ID}.{APPS_DOMAIN}"
        return hostname[: -len(suffix)] if hostname.endswith(suffix) else None

    def authenticate(self, request: Request) -> tuple[Caller | None, Response | None]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and request.path.startswith("/api/"):
            token = header[7:]
            if self.is_personal_access_token(token):
                return None, _page(
                    401, "Unauthorized", "Personal access tokens are not accepted; use OAuth."
                )
            principal = self.token_principal(token)
            if principal is None:
                return None, _page(401, "Unauthorized", "Invalid or expired access token.")
            return Caller(principal, "@" in principal), None
        user = self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if user is not None:
            return Caller(user, True), None
        target = quote(request.full_path.rstrip("?"), safe="")
        return None, Response(status=302, headers={"Location": f"/.auth/login?next={target}"})

    def login(self, request: Request) -> Response:
        """An HTML sign-in page; signing in as a workspace user sets the session cookie."""
        if request.method == "POST":
            user = request.form.get("user", "")
            if user not in self.users:
                return _page(403, "Sign-in failed", f"{user} is not a user of this workspace.")
            session = secrets.token_urlsafe(24)
            self.sessions[session] = user
            target = request.form.get("next") or "/"
            response = Response(status=302, headers={"Location": _local(target)})
            response.set_cookie(SESSION_COOKIE, session, secure=True, httponly=True, path="/")
            return response
        target = html.escape(request.args.get("next", "/"))
        body = (
            "<!doctype html><title>Sign in to Databricks</title>"
            '<form method="post" action="/.auth/login">'
            f'<input type="hidden" name="next" value="{target}">'
            '<label>Email <input name="user" type="email"></label>'
            '<button type="submit">Sign in</button></form>'
        )
        return Response(body, status=200, mimetype="text/html")

    def forward(
        self,
        request: Request,
        environ: dict,
        start_response: Callable,
        app: dict,
        caller: Caller,
        port: int,
    ) -> Iterable[bytes]:
        headers = self.forwarded_headers(request, app, caller)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        body = request.stream if request.content_length or chunked else None
        if request.content_length:
            headers["Content-Length"] = str(request.content_length)
        path = request.full_path.rstrip("?") or "/"
        connection.request(request.method, path, body, headers, encode_chunked=chunked)
        answer = connection.getresponse()
        out = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
        start_response(f"{answer.status} {answer.reason}", out)
        return _stream(answer, connection)

    def forwarded_headers(self, request: Request, app: dict, caller: Caller) -> dict[str, str]:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP_BY_HOP
            and k.lower() not in ("authorization", "cookie")
            and not k.lower().startswith("x-forwarded-")
        }
        headers.update(
            {
                # The app is addressed by an internal name; the public one is forwarded.
                "Host": f"{app['name']}.apps.internal:8080",
                "X-Forwarded-Host": request.host,
                "X-Forwarded-Proto": "https",
                "X-Forwarded-User": f"{zlib.crc32(caller.principal.encode())}@{WORKSPACE_ID}",
                "X-Forwarded-Preferred-Username": caller.principal,
                "X-Real-Ip": request.remote_addr or "",
                "X-Request-Id": str(uuid.uuid4()),
            }
        )
        if caller.is_user:
            headers["X-Forwarded-Email"] = caller.principal
        scopes = app.get("user_api_scopes") or []
        if scopes:
            headers["X-Forwarded-Access-Token"] = self.mint_token(caller.principal, scopes)
        return headers


def _stream(answer: http.client.HTTPResponse, connection: http.client.HTTPConnection):
    try:
        while chunk := answer.read(64 * 1024):
            yield chunk
    finally:
        connection.close()


def _local(target: str) -> str:
    """Only a path on this host: the login page never redirects elsewhere."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return "/"
    return target


def _page(status: int, title: str, text: str) -> Response:
    body = f"<!doctype html><title>{html.escape(title)}</title><p>{html.escape(text)}</p>"
    return Response(body, status=status, mimetype="text/html")


if __name__ == "__main__":  # pragma: no cover - imported by the stand-in
    sys.exit("import this module: python -m tests.contract.standin runs the stand-in")
