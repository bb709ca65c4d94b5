"""A stand-in Databricks workspace over real HTTP, built from the public REST API reference.

It implements what mlflow-app calls: OAuth M2M (host metadata at
`/.well-known/databricks-config`, OIDC discovery, the client-credentials token endpoint,
expiring tokens), personal access tokens, the current-user SCIM endpoint, the
`/api/2.0/mlflow/*` tracking surface (served by a real MLflow store, so the semantics are
MLflow's own), the Unity Catalog registry calls MLflow's `databricks-uc` store makes
(registered models, model versions with the create -> upload -> finalize flow, aliases,
download URIs) and the Files API for `/Volumes/<catalog>/<schema>/<volume>/...` and for model
version files under `/Models/<catalog>/<schema>/<model>/<version>/...`.
It rejects missing, unknown and expired tokens as Databricks does, and a test can inject
429 (with Retry-After), 5xx, latency, permission denials or a full outage, and read counters
of token requests, API requests and client connections under `/_standin/`.

Databricks Apps (create, start, stop, deploy, the runtime and the proxy) live in
standin_platform and standin_apps; the workspace also answers over HTTPS on --tls-port, and
every app's proxy listens on --proxy-port.

Run: python -m tests.contract.standin --port P --tls-port T --proxy-port X --state-dir DIR
     --client-id ID --client-secret SECRET [--token-ttl 3600] [--pat TOKEN]
     [--volume /Volumes/c/s/v] [--user-token TOKEN=user@example.com]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from tests.contract.standin_apps import APPS_DOMAIN, AppRuntime, AppsProxy, serve_tls
from tests.contract.standin_files import CloudStorage, receive, serve
from tests.contract.standin_platform import Platform

_MLFLOW_PREFIXES = ("/api/2.0/mlflow/", "/api/3.0/mlflow/", "/api/2.0/mlflow-artifacts/")
_INVALID_NAME = (
    "Got an invalid experiment name '{}'. An experiment name must be an absolute path within "
    "the Databricks workspace, e.g. '/Users/<some-username>/my-experiment'."
)
# Per call, the argument holding an experiment name.
_EXPERIMENT_NAMES = {
    "/experiments/create": "name",
    "/experiments/get-by-name": "experiment_name",
    "/experiments/update": "new_name",
}
_ARTIFACT_LOCATION_SCHEMES = ("dbfs:/", "s3://", "s3a://", "abfss://", "gs://", "wasbs://")


@dataclass
class Fault:
    prefix: str
    status: int
    times: int
    retry_after: int | None = None
    delay: float = 0.0
    method: str | None = None  # only requests with this method, when set


@dataclass
class Token:
    principal: str
    expires: float
    scopes: tuple[str, ...] = ("all-apis",)


# What a token with a narrower scope than all-apis may call (Databricks Apps user scopes).
SCOPE_PATHS = {
    "files.files": ("/api/2.0/fs/",),
    "iam.current-user:read": ("/api/2.0/preview/scim/v2/Me",),
    "iam.access-control:read": ("/api/2.0/permissions/",),
    "sql": ("/api/2.0/sql/",),
    "serving.serving-endpoints": ("/api/2.0/serving-endpoints",),
}


@dataclass
class State:
    clients: dict[str, str]  # OAuth client id -> secret (the test's and each app's principal)
    token_ttl: float
    pats: dict[str, str]
    volumes: list[str]
    root: Path
    tokens: dict[str, Token] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    denied: dict[str, set[str]] = field(default_factory=dict)
    uc_models: dict[str, dict] = field(default_factory=dict)
    uc_versions: dict[str, list[dict]] = field(default_factory=dict)
    opened_by: dict[str, int] = field(default_factory=dict)
    down: bool = False
    # The workspace's answer to is-databricks-sdk-models-artifact-repository-enabled: whether UC
    # model files go through the Files API, or to cloud storage with temporary credentials.
    uc_model_files_api: bool = True
    token_requests: int = 0
    api_requests: int = 0
    calls: list[dict] = field(default_factory=list)  # the latest API calls, by principal
    connections: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def trace_experiments(data: object) -> list[str]:
    """Experiment ids a trace call names as locations: `mlflow_experiment.experiment_id`."""
    if isinstance(data, list):
        return [i for item in data for i in trace_experiments(item)]
    if not isinstance(data, dict):
        return []
    found = trace_experiments(list(data.values()))
    if isinstance(data.get("mlflow_experiment"), dict):
        found.append(data["mlflow_experiment"].get("experiment_id"))
    return found


def set_or_delete_tag(entity: dict, action: str, body: dict) -> Response:
    """A Unity Catalog model's or version's tag: `set-tag` (key, value) or `delete-tag` (key)."""
    key = body.get("key", "")
    if not key:
        return api_error(400, "INVALID_PARAMETER_VALUE", "key is required.")
    entity["tags"] = [t for t in entity.get("tags", []) if t["key"] != key]
    if action == "set-tag":
        entity["tags"].append({"key": key, "value": body.get("value", "")})
    return json_response({})


def json_response(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, mimetype="application/json", headers=headers or {}
    )


def api_error(status: int, error_code: str, message: str, **headers: str) -> Response:
    return json_response({"error_code": error_code, "message": message}, status, headers)


class Workspace:
    """The WSGI app: control plane, OAuth, then authenticated /api/ routes."""

    def __init__(self, state: State, mlflow_app, platform: Platform) -> None:
        self.state = state
        self.mlflow_app = mlflow_app
        self.platform = platform
        self.storage = CloudStorage(state.root)

    def __call__(self, environ, start_response):
        request = Request(environ)
        path = request.path
        with self.state.lock:
            peer = f"{environ.get('REMOTE_ADDR')}:{environ.get('REMOTE_PORT')}"
            if peer not in self.state.connections:
                self.state.connections.add(peer)
                self.state.opened_by[path] = self.state.opened_by.get(path, 0) + 1
        if path.startswith("/_standin/"):
            return self.control(request)(environ, start_response)
        if self.state.down:
            return api_error(
                503, "TEMPORARILY_UNAVAILABLE", "The service at /api is temporarily unavailable."
            )(environ, start_response)
        if path.startswith("/_cloud/"):
            return self.storage.presigned(request)(environ, start_response)
        if path == "/.well-known/databricks-config":
            base = request.host_url.rstrip("/")
            return json_response(
                {"oidc_endpoint": f"{base}/oidc", "workspace_id": "7000000001", "cloud": "aws"}
            )(environ, start_response)
        if path == "/oidc/.well-known/oauth-authorization-server":
            return self.discovery(request)(environ, start_response)
        if path == "/oidc/v1/token":
            return self.token(request)(environ, start_response)
        if not path.startswith("/api/"):
            return api_error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{path}'")(
                environ, start_response
            )
        principal, failure = self.authenticate(request)
        if failure is not None:
            return failure(environ, start_response)
        with self.state.lock:
            self.state.api_requests += 1
            self.state.calls.append(
                {"principal": principal, "method": request.method, "path": path}
            )
            del self.state.calls[:-500]
        if (fault := self.take_fault(path, request.method)) is not None:
            return fault(environ, start_response)
        for prefix in self.state.denied.get(principal, ()):
            if path.startswith(prefix):
                return api_error(
                    403,
                    "PERMISSION_DENIED",
                    f"User {principal} does not have permission for {path}.",
                )(environ, start_response)
        if path == "/api/2.0/preview/scim/v2/Me":
            return json_response(
                {
                    "id": "7000001",
                    "userName": principal,
                    "displayName": f"standin {principal}",
                    "active": True,
                }
            )(environ, start_response)
        if path.startswith("/api/2.0/fs/"):
            return self.files(request, principal)(environ, start_response)
        if path.startswith("/api/2.0/mlflow/unity-catalog/registered-models"):
            return self.uc_models(request, principal)(environ, start_response)
        if path.startswith("/api/2.0/mlflow/unity-catalog/model-versions/"):
            return self.uc_versions(request, principal)(environ, start_response)
        if path.startswith(_MLFLOW_PREFIXES) and (
            refused := self.refuse_experiment_call(request, principal)
        ):
            return refused(environ, start_response)
        if path == "/api/2.0/mlflow/experiments/create":
            body = request.get_data()
            environ["wsgi.input"] = io.BytesIO(body)  # MLflow's app reads the body again
            if refused := self.refuse_artifact_location(body):
                return refused(environ, start_response)
        with self.state.lock:
            answered = self.platform.handle(request, principal, request.host_url.rstrip("/"))
        if answered is not None:
            return answered(environ, start_response)
        if path.startswith(_MLFLOW_PREFIXES):
            return self.mlflow_app(environ, start_response)
        return api_error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {path}'")(
            environ, start_response
        )

    # --- control plane for tests -------------------------------------------------------------
    def control(self, request: Request) -> Response:
        state = self.state
        body = request.get_json(silent=True) or {}
        with state.lock:
            if request.path == "/_standin/stats":
                return json_response(
                    {
                        "token_requests": state.token_requests,
                        "api_requests": state.api_requests,
                        "connections": len(state.connections),
                        "connections_opened_by_path": state.opened_by,
                        "live_tokens": len(state.tokens),
                    }
                )
            if request.path == "/_standin/calls":
                return json_response({"calls": state.calls})
            if request.path == "/_standin/platform":
                return json_response(self.platform_state())
            if request.path == "/_standin/reset":
                state.token_requests = state.api_requests = 0
                state.calls.clear()
                state.connections.clear()
                state.faults.clear()
                state.denied.clear()
                state.down = False
            elif request.path == "/_standin/faults":
                state.faults.append(Fault(**body))
            elif request.path == "/_standin/deny":
                state.denied.setdefault(body["principal"], set()).add(body["prefix"])
            elif request.path == "/_standin/down":
                state.down = bool(body.get("down", True))
            elif request.path == "/_standin/mint-token":
                # What the Apps proxy forwards for a user of an app with user API scopes.
                token = "standin-" + secrets.token_hex(16)
                state.tokens[token] = Token(
                    body["principal"], time.time() + state.token_ttl, tuple(body["scopes"])
                )
                return json_response({"access_token": token})
            elif request.path == "/_standin/uc-model-files":
                state.uc_model_files_api = bool(body["files_api"])
            elif request.path == "/_standin/expire-tokens":
                for token in state.tokens.values():
                    token.expires = 0.0
            else:
                return api_error(404, "ENDPOINT_NOT_FOUND", request.path)
        return json_response({})

    def platform_state(self) -> dict:
        platform = self.platform
        return {
            "catalogs": sorted(platform.catalogs),
            "schemas": sorted(platform.schemas),
            "volumes": sorted(platform.volume_infos),
            "apps": platform.apps,
            "grants": {
                f"{kind}:{name}": {who: sorted(p) for who, p in held.items()}
                for (kind, name), held in platform.grants.items()
            },
            "folder_acls": platform.workspace_acls,
            "workspace_files": sorted(platform.workspace_files),
        }

    def take_fault(self, path: str, method: str) -> Response | None:
        with self.state.lock:
            fault = next(
                (
                    f
                    for f in self.state.faults
                    if path.startswith(f.prefix) and f.method in (None, method)
                ),
                None,
            )
            if fault is None:
                return None
            fault.times -= 1
            if fault.times <= 0:
                self.state.faults.remove(fault)
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status == 200:
            return None
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
        code = {
            403: "PERMISSION_DENIED",
            429: "REQUEST_LIMIT_EXCEEDED",
            503: "TEMPORARILY_UNAVAILABLE",
        }.get(fault.status, "INTERNAL_ERROR")
        return api_error(fault.status, code, f"Injected {fault.status} for {path}", **headers)

    # --- OAuth ---------------------------------------------------------------------------------
    def discovery(self, request: Request) -> Response:
        base = request.host_url.rstrip("/")
        return json_response(
            {
                "issuer": f"{base}/oidc",
                "authorization_endpoint": f"{base}/oidc/v1/authorize",
                "token_endpoint": f"{base}/oidc/v1/token",
                "grant_types_supported": [
                    "client_credentials",
                    "authorization_code",
                    "refresh_token",
                ],
                "scopes_supported": ["all-apis", "offline_access", "openid", "profile", "email"],
            }
        )

    def token(self, request: Request) -> Response:
        with self.state.lock:
            self.state.token_requests += 1
        if request.method != "POST":
            return json_response({"error": "invalid_request"}, 405)
        form = request.form
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, 400)
        if not client_id or self.state.clients.get(client_id) != client_secret:
            return json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                401,
            )
        token = self.mint_token(client_id)
        return json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": int(self.state.token_ttl),
                "scope": form.get("scope", "all-apis"),
            }
        )

    def mint_token(self, principal: str, scopes: tuple[str, ...] = ("all-apis",)) -> str:
        token = "standin-" + secrets.token_hex(16)
        with self.state.lock:
            self.state.tokens[token] = Token(
                principal, time.time() + self.state.token_ttl, tuple(scopes)
            )
        return token

    def oauth_principal(self, token: str) -> str | None:
        """Who an unexpired OAuth access token belongs to (for the Apps proxy)."""
        with self.state.lock:
            known = self.state.tokens.get(token)
        return known.principal if known and time.time() < known.expires else None

    def authenticate(self, request: Request) -> tuple[str, Response | None]:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return "", api_error(
                401, "401", "Credential was not sent or was of an unsupported type for this API."
            )
        token = header[7:]
        if token in self.state.pats:
            return self.state.pats[token], None
        with self.state.lock:
            known = self.state.tokens.get(token)
        if known is None:
            return "", api_error(403, "403", "Invalid access token.")
        if time.time() >= known.expires:
            return "", api_error(403, "403", "Invalid access token. Token expired.")
        if "all-apis" not in known.scopes and not any(
            request.path.startswith(prefix)
            for s in known.scopes
            for prefix in SCOPE_PATHS.get(s, ())
        ):
            return "", api_error(
                403,
                "PERMISSION_DENIED",
                f"Provided OAuth token does not have required scopes for {request.path}; "
                f"it has: {' '.join(known.scopes)}",
            )
        return known.principal, None

    # --- experiments: workspace objects, named by their path -----------------------------------
    def refuse_experiment_call(self, request: Request, principal: str) -> Response | None:
        """Experiment names are absolute workspace paths in a folder that exists and the caller
        may manage; there is no experiment 0."""
        body = request.get_data()
        request.environ["wsgi.input"] = io.BytesIO(body)  # MLflow's app reads the body again
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return None  # MLflow's app answers malformed bodies itself
        if not isinstance(data, dict):
            return None
        ids = [*request.args.getlist("experiment_ids"), *(data.get("experiment_ids") or [])]
        ids.append(data.get("experiment_id") or request.args.get("experiment_id"))
        ids.extend(trace_experiments(data))
        if "0" in ids:
            return api_error(404, "RESOURCE_DOES_NOT_EXIST", "Node ID 0 does not exist.")
        call = request.path.split("/mlflow", 1)[1]
        argument = _EXPERIMENT_NAMES.get(call)
        name = data.get(argument) or request.args.get(argument) if argument else None
        if name is None:
            return None
        if not name.startswith("/"):
            if call == "/experiments/get-by-name":
                return api_error(404, "RESOURCE_DOES_NOT_EXIST", _INVALID_NAME.format(name))
            return api_error(400, "INVALID_PARAMETER_VALUE", _INVALID_NAME.format(name))
        if call == "/experiments/get-by-name":
            return None
        with self.state.lock:
            return self.platform.refuse_new_object(name, principal)

    # --- Unity Catalog registry (the calls MLflow's databricks-uc store makes) ------------------
    def refuse_artifact_location(self, body: bytes) -> Response | None:
        """The workspace accepts DBFS, UC volume and cloud storage locations, nothing else."""
        try:
            location = json.loads(body or b"{}").get("artifact_location") or ""
        except (ValueError, AttributeError):
            return None  # MLflow's app answers malformed bodies itself
        if not location or location.startswith(_ARTIFACT_LOCATION_SCHEMES):
            return None
        return api_error(
            400,
            "INVALID_PARAMETER_VALUE",
            f"Unsupported artifact location '{location}': use dbfs:/, dbfs:/Volumes/ or a "
            "cloud storage URI.",
        )

    @staticmethod
    def uc_arguments(request: Request) -> dict:
        # MLflow sends GET arguments as query parameters and the others as a JSON body.
        return {**request.args.to_dict(), **(request.get_json(silent=True) or {})}

    def uc_models(self, request: Request, principal: str) -> Response:
        action = request.path.rsplit("/", 1)[1]
        body = self.uc_arguments(request)
        name = body.get("name", "")
        models = self.state.uc_models
        if action == "registered-models:is-databricks-sdk-models-artifact-repository-enabled":
            enabled = self.state.uc_model_files_api
            return json_response({"is_databricks_sdk_models_artifact_repository_enabled": enabled})
        if action == "search":
            found = sorted(models.values(), key=lambda m: m["name"])
            return json_response({"registered_models": found[: int(body.get("max_results", 100))]})
        if action == "create" and request.method == "POST":
            if len(name.split(".")) != 3:
                return api_error(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    f"Model name '{name}' must be "
                    "a three-level Unity Catalog name: <catalog>.<schema>.<model>",
                )
            if name in models:
                return api_error(400, "RESOURCE_ALREADY_EXISTS", f"Model '{name}' exists.")
            with self.state.lock:
                refused = self.platform.refuse_without(
                    principal, name.rsplit(".", 1)[0], "CREATE_MODEL"
                )
            if refused is not None:
                return refused
            now = int(time.time() * 1000)
            models[name] = {
                "name": name,
                "creation_timestamp": now,
                "last_updated_timestamp": now,
                "user_id": principal,
                "description": body.get("description", ""),
                "aliases": [],
                "tags": list(body.get("tags") or []),
            }
            self.state.uc_versions[name] = []
            return json_response({"registered_model": models[name]})
        if name not in models:
            return api_error(404, "RESOURCE_DOES_NOT_EXIST", f"Model '{name}' does not exist.")
        if action == "get":
            return json_response({"registered_model": models[name]})
        if action == "delete" and request.method == "DELETE":
            del models[name]
            self.state.uc_versions.pop(name, None)
            return json_response({})
        if action == "alias":
            return self.uc_alias(request, models[name], body)
        if action in ("set-tag", "delete-tag"):
            return set_or_delete_tag(models[name], action, body)
        return api_error(404, "ENDPOINT_NOT_FOUND", f"{request.method} {request.path}")

    def uc_alias(self, request: Request, model: dict, body: dict) -> Response:
        alias = body.get("alias", "")
        aliases = model["aliases"]
        current = next((a for a in aliases if a["alias"] == alias), None)
        if request.method == "POST":
            version = self.find_version(model["name"], str(body.get("version", "")))
            if version is None:
                return api_error(
                    404, "RESOURCE_DOES_NOT_EXIST", f"Version {body.get('version')} not found."
                )
            if current is not None:
                aliases.remove(current)
            aliases.append({"alias": alias, "version": version["version"]})
            return json_response({})
        if current is None:
            return api_error(
                404, "RESOURCE_DOES_NOT_EXIST", f"Alias '{alias}' not found on {model['name']}."
            )
        if request.method == "DELETE":
            aliases.remove(current)
            return json_response({})
        version = self.find_version(model["name"], current["version"])
        return json_response({"model_version": self.version_view(version)})

    def find_version(self, name: str, version: str) -> dict | None:
        versions = self.state.uc_versions.get(name, [])
        return next((v for v in versions if v["version"] == version), None)

    def version_view(self, version: dict) -> dict:
        model = self.state.uc_models[version["name"]]
        aliases = [a for a in model["aliases"] if a["version"] == version["version"]]
        return {**version, "aliases": aliases}

    def uc_versions(self, request: Request, principal: str) -> Response:
        action = request.path.rsplit("/", 1)[1]
        body = self.uc_arguments(request)
        if action == "search":
            match = re.fullmatch(r"\s*name\s*=\s*'([^']+)'\s*", body.get("filter", ""))
            if match is None:
                return api_error(
                    400, "INVALID_PARAMETER_VALUE", "Filter must be of the form name='<model>'."
                )
            found = self.state.uc_versions.get(match.group(1), [])
            # Search answers without tags (a version's tags come with get); never kinder.
            views = [{**self.version_view(v), "tags": []} for v in found]
            return json_response({"model_versions": views})
        name = body.get("name", "")
        if name not in self.state.uc_models:
            return api_error(404, "RESOURCE_DOES_NOT_EXIST", f"Model '{name}' does not exist.")
        if action == "create" and request.method == "POST":
            return self.create_version(name, body, principal)
        version = self.find_version(name, str(body.get("version", "")))
        if version is None:
            return api_error(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                f"Model version {name}/{body.get('version')} does not exist.",
            )
        if action == "finalize" and request.method == "POST":
            if version["status"] != "PENDING_REGISTRATION":
                return api_error(
                    400, "INVALID_STATE", f"Model version {name}/{version['version']} is final."
                )
            version["status"] = "READY"
            return json_response({"model_version": self.version_view(version)})
        if action == "generate-temporary-credentials" and request.method == "POST":
            return self.temporary_credentials(version, body.get("operation", ""))
        if action == "get":
            return json_response({"model_version": self.version_view(version)})
        if action in ("set-tag", "delete-tag"):
            return set_or_delete_tag(version, action, body)
        if action == "get-download-uri":
            return json_response({"artifact_uri": version["storage_location"]})
        if action == "delete" and request.method == "DELETE":
            self.state.uc_versions[name].remove(version)
            return json_response({})
        return api_error(404, "ENDPOINT_NOT_FOUND", f"{request.method} {request.path}")

    @staticmethod
    def temporary_credentials(version: dict, operation: str) -> Response:
        """AWS credentials scoped to the version's storage location (the S3 test server takes
        any); write credentials only while the version is pending, as on the platform."""
        if operation.endswith("READ_WRITE") and version["status"] != "PENDING_REGISTRATION":
            return api_error(
                403,
                "PERMISSION_DENIED",
                f"Model version {version['name']}/{version['version']} is final: files are "
                "read-only.",
            )
        return json_response(
            {
                "credentials": {
                    "aws_temp_credentials": {
                        "access_key_id": "ASIASTANDIN",
                        "secret_access_key": secrets.token_hex(20),
                        "session_token": secrets.token_hex(32),
                    },
                    "expiration_time": int(time.time() * 1000) + 3_600_000,
                    "storage_mode": "CUSTOMER_HOSTED",
                }
            }
        )

    def create_version(self, name: str, body: dict, principal: str) -> Response:
        if not body.get("source"):
            return api_error(400, "INVALID_PARAMETER_VALUE", "source is required.")
        versions = self.state.uc_versions[name]
        number = str(len(versions) + 1 if not versions else int(versions[-1]["version"]) + 1)
        now = int(time.time() * 1000)
        version = {
            "name": name,
            "version": number,
            "source": body["source"],
            "description": body.get("description", ""),
            "status": "PENDING_REGISTRATION",
            "storage_location": f"s3://standin-metastore/models/{name}/versions/{number}",
            "creation_timestamp": now,
            "last_updated_timestamp": now,
            "user_id": principal,
            "tags": list(body.get("tags") or []),
            # Fields a request did not set are absent from the answer, as in proto3 JSON.
            **{key: body[key] for key in ("run_id", "model_id") if body.get(key)},
        }
        versions.append(version)
        return json_response({"model_version": self.version_view(version)})

    # --- Files API -------------------------------------------------------------------------------
    def files(self, request: Request, principal: str) -> Response:
        kind, _, raw = request.path[len("/api/2.0/fs/") :].partition("/")
        if kind == "create-upload-part-urls" and request.method == "POST":
            return self.storage.part_urls(request)
        if kind == "create-download-url" and request.method == "POST":
            path = request.args.get("path", "")
            local = self.local_file(principal, path, reads=True)
            if isinstance(local, Response):
                return local
            if not local.is_file():
                return api_error(404, "NOT_FOUND", f"File {path} does not exist.")
            return self.storage.download_url(request, local)
        volume_path = "/" + unquote(raw)
        if volume_path.startswith("/Models/"):
            return self.model_files(request, kind, volume_path)
        local = self.local_file(principal, volume_path, reads=request.method in ("GET", "HEAD"))
        if isinstance(local, Response):
            return local
        if kind == "files":
            return self.file_call(request, local, volume_path)
        if kind == "directories":
            return self.directory_call(request, local, volume_path)
        return api_error(404, "ENDPOINT_NOT_FOUND", request.path)

    def local_file(self, principal: str, volume_path: str, reads: bool) -> Path | Response:
        """Where a volume path lives here, once the principal may read (or write) it."""
        if volume_path.startswith("/Models/"):
            return self.state.root / "models" / volume_path.lstrip("/")
        volume = next(
            (v for v in self.state.volumes if volume_path.startswith(v + "/") or volume_path == v),
            None,
        )
        if volume is None or ".." in volume_path.split("/"):
            return api_error(404, "NOT_FOUND", f"The volume for {volume_path} does not exist.")
        with self.state.lock:
            refused = self.platform.refuse_without(
                principal,
                volume.removeprefix("/Volumes/").replace("/", "."),
                "READ_VOLUME" if reads else "WRITE_VOLUME",
            )
        if refused is not None:
            return refused
        return self.state.root / "volumes" / volume_path.lstrip("/")

    def model_files(self, request: Request, kind: str, path: str) -> Response:
        """Model version files: writable while the version is pending, read-only once final."""
        parts = path.split("/")
        if len(parts) < 6 or ".." in parts:
            return api_error(404, "NOT_FOUND", f"{path} is not a model version path.")
        version = self.find_version(".".join(parts[2:5]), parts[5])
        if version is None:
            return api_error(404, "NOT_FOUND", f"The model version for {path} does not exist.")
        if request.method in ("PUT", "DELETE") and version["status"] != "PENDING_REGISTRATION":
            return api_error(
                403, "PERMISSION_DENIED", f"Model version files are read-only once final: {path}"
            )
        local = self.state.root / "models" / path.lstrip("/")
        if kind == "files":
            return self.file_call(request, local, path)
        return self.directory_call(request, local, path)

    def file_call(self, request: Request, local: Path, path: str) -> Response:
        overwrite = request.args.get("overwrite", "false").lower() == "true"
        if request.method == "POST":
            action = request.args.get("action")
            if action == "initiate-upload":
                return self.storage.initiate(local, path, overwrite)
            if action == "complete-upload":
                return self.storage.complete(request, local)
            if action == "abort-upload":
                return self.storage.abort(request)
            return api_error(400, "INVALID_PARAMETER_VALUE", f"Unknown action {action}.")
        if request.method == "PUT":
            if local.exists() and not overwrite:
                return api_error(409, "ALREADY_EXISTS", f"File {path} already exists.")
            receive(request, local)
            return Response(status=204)
        if not local.is_file():
            return api_error(404, "NOT_FOUND", f"File {path} does not exist.")
        if request.method == "DELETE":
            local.unlink()
            return Response(status=204)
        return serve(request, local)

    def directory_call(self, request: Request, local: Path, path: str) -> Response:
        if request.method == "PUT":
            local.mkdir(parents=True, exist_ok=True)
            return Response(status=204)
        if not local.is_dir():
            return api_error(404, "NOT_FOUND", f"Directory {path} does not exist.")
        if request.method == "DELETE":
            if any(local.iterdir()):
                return api_error(400, "DIRECTORY_NOT_EMPTY", f"Directory {path} is not empty.")
            local.rmdir()
            return Response(status=204)
        if request.method == "HEAD":
            return Response(status=200)
        contents = [
            {
                "path": f"{path.rstrip('/')}/{entry.name}",
                "name": entry.name,
                "is_directory": entry.is_dir(),
                **(
                    {}
                    if entry.is_dir()
                    else {
                        "file_size": entry.stat().st_size,
                        "last_modified": int(entry.stat().st_mtime * 1000),
                    }
                ),
            }
            for entry in sorted(local.iterdir())
        ]
        return json_response({"contents": contents} if contents else {})


def build(args: argparse.Namespace) -> Workspace:
    root = Path(args.state_dir)
    root.mkdir(parents=True, exist_ok=True)
    for volume in args.volume:
        (root / "volumes" / volume.lstrip("/")).mkdir(parents=True, exist_ok=True)
    # The workspace's MLflow: a real SQLite-backed MLflow server app, imported in this process.
    os.environ.update(
        {
            "_MLFLOW_SERVER_FILE_STORE": f"sqlite:///{root / 'workspace.db'}",
            "_MLFLOW_SERVER_ARTIFACT_ROOT": str(root / "workspace-artifacts"),
            "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    from mlflow.server import app as mlflow_app
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # The workspace keeps a logged model's files at <experiment location>/logged_models/<id>/
    # artifacts (MLflow's DatabricksLoggedModelArtifactRepository parses exactly that under the
    # workspace's own dbfs:/databricks/mlflow-tracking/<experiment>); OSS MLflow says "models".
    SqlAlchemyStore.MODELS_FOLDER_NAME = "logged_models"

    state = State(
        clients={args.client_id: args.client_secret},
        token_ttl=args.token_ttl,
        pats={
            **dict.fromkeys(args.pat, "pat-user@example.com"),
            **dict(u.split("=", 1) for u in args.user_token),
        },
        volumes=[v.rstrip("/") for v in args.volume],
        root=root,
    )
    runtime = AppRuntime(
        root=root,
        workspace_host=f"127.0.0.1:{args.tls_port}",
        ca_bundle=root / "ca.pem",
        lock=state.lock,
        prepare_seconds=args.deploy_prepare_seconds,
    )
    platform = Platform(
        root=root,
        volumes=state.volumes,
        runtime=runtime,
        proxy_port=args.proxy_port,
        register_client=state.clients.__setitem__,
        app_start_seconds=args.app_start_seconds,
    )
    platform.seed()
    for principal in {args.client_id, *state.pats.values()}:
        platform.grant_seeded(principal)
    hide_the_default_experiment()
    return Workspace(state, mlflow_app, platform)


def hide_the_default_experiment() -> None:
    """The workspace has no experiment 0; MLflow's store made one, which nobody may see."""
    from mlflow.entities import LifecycleStage
    from mlflow.server.handlers import _get_tracking_store

    store = _get_tracking_store()
    if store.get_experiment("0").lifecycle_stage == LifecycleStage.ACTIVE:
        store.delete_experiment("0")


def front_doors(workspace: Workspace, args: argparse.Namespace) -> None:
    """The workspace over HTTPS (what DATABRICKS_HOST without a scheme means) and the Apps
    proxy, both with a certificate from a CA whose PEM is <state-dir>/ca.pem."""
    import trustme

    root = Path(args.state_dir)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    issued = ca.issue_cert("127.0.0.1", "localhost", f"*.{APPS_DOMAIN}")
    issued.cert_chain_pems[0].write_to_path(str(root / "tls-cert.pem"))
    issued.private_key_pem.write_to_path(str(root / "tls-key.pem"))
    cert, key = root / "tls-cert.pem", root / "tls-key.pem"
    serve_tls(workspace, args.tls_port, cert, key)
    state = workspace.state
    proxy = AppsProxy(
        apps=workspace.platform.apps,
        runtime=workspace.platform.runtime,
        lock=state.lock,
        token_principal=workspace.oauth_principal,
        is_personal_access_token=state.pats.__contains__,
        mint_token=lambda principal, scopes: workspace.mint_token(principal, tuple(scopes)),
        users={u for u in state.pats.values() if "@" in u},
    )
    serve_tls(proxy, args.proxy_port, cert, key)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-port", type=int, required=True)
    parser.add_argument("--proxy-port", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--token-ttl", type=float, default=3600)
    parser.add_argument("--pat", action="append", default=[])
    parser.add_argument("--volume", action="append", default=[])
    parser.add_argument("--user-token", action="append", default=[], help="TOKEN=user@example.com")
    parser.add_argument("--app-start-seconds", type=float, default=3.0)
    parser.add_argument("--deploy-prepare-seconds", type=float, default=1.0)
    return parser.parse_args(argv)


def main() -> None:
    """Serve with gunicorn (one process, so state is shared; gthread for HTTP/1.1 keep-alive,
    which the real workspace offers and connection-reuse tests rely on). The HTTPS doors and
    the deployed apps live in the worker; the apps stop when it exits."""
    from gunicorn.app.base import BaseApplication

    args = parse_args(sys.argv[1:])
    app = build(args)

    class StandInServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": f"127.0.0.1:{args.port}",
                "workers": 1,
                "worker_class": "gthread",
                "threads": 16,
                "keepalive": 30,
                "graceful_timeout": 1,
                "control_socket_disable": True,
                "loglevel": "warning",
                "worker_exit": lambda server, worker: app.platform.runtime.stop_all(),
            }.items():
                self.cfg.set(key, value)

        def load(self):
            front_doors(app, args)
            return app

    StandInServer().run()


if __name__ == "__main__":
    main()
