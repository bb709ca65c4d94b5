"""The stand-in workspace's platform APIs, for `mlflow-app setup`, `deploy` and `doctor`.

Built from the public REST reference: Unity Catalog catalogs, schemas and volumes
(`/api/2.1/unity-catalog/...`), grants and effective permissions, Databricks Apps
(`/api/2.0/apps`: create, get, update, start, stop, deployments; compute that takes time to
start, and the platform's refusals; standin_apps runs what is deployed) and workspace files
(`/api/2.0/workspace/{mkdirs,import,get-status,delete}`). Every securable records its owner;
the caller owns what it creates and the app's service principal holds only what is granted.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.contract.standin_apps import app_host


def json_response(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def api_error(status: int, error_code: str, message: str) -> Response:
    return json_response({"error_code": error_code, "message": message}, status)


_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_APP_NAME = re.compile(r"[a-z0-9-]{2,30}")
_APP_MUTABLE = ("description", "resources", "user_api_scopes")


@dataclass
class Platform:
    root: Path
    volumes: list[str]  # shared with the Files API: /Volumes/c/s/v
    catalogs: dict[str, dict] = field(default_factory=dict)
    schemas: dict[str, dict] = field(default_factory=dict)
    volume_infos: dict[str, dict] = field(default_factory=dict)
    grants: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)
    apps: dict[str, dict] = field(default_factory=dict)
    deployments: dict[str, dict] = field(default_factory=dict)
    runtime: Any = None  # standin_apps.AppRuntime: runs what is deployed
    proxy_port: int = 0  # the Apps proxy's port; an app's URL is https://<app host>:<port>
    register_client: Callable[[str, str], None] = lambda client_id, secret: None
    app_start_seconds: float = 3.0
    workspace_files: dict[str, bytes] = field(default_factory=dict)
    workspace_dirs: set[str] = field(
        default_factory=lambda: {
            "/",
            "/Workspace",
            "/Users",
            "/Shared",
            "/Workspace/Users",
            "/Workspace/Shared",
        }
    )
    # Folder ACLs: path -> principal -> level. A creator manages what it creates; every user
    # manages /Shared and their own /Users/<name> (the workspace's defaults).
    workspace_acls: dict[str, dict[str, str]] = field(default_factory=dict)
    workspace_ids: dict[str, int] = field(default_factory=dict)

    def seed(self) -> None:
        """What a new workspace has: the `main` catalog, its `default` schema and the volumes
        given on the command line, owned by the metastore admin."""
        self.catalogs["main"] = {"name": "main", "owner": "metastore-admin"}
        self.schemas["main.default"] = {
            "name": "default",
            "catalog_name": "main",
            "full_name": "main.default",
            "owner": "metastore-admin",
        }
        for volume in self.volumes:
            catalog, schema, name = volume.split("/")[2:5]
            self.catalogs.setdefault(catalog, {"name": catalog, "owner": "metastore-admin"})
            self.schemas.setdefault(
                f"{catalog}.{schema}",
                {
                    "name": schema,
                    "catalog_name": catalog,
                    "full_name": f"{catalog}.{schema}",
                    "owner": "metastore-admin",
                },
            )
            self.volume_infos[f"{catalog}.{schema}.{name}"] = self.volume_info(
                catalog, schema, name, "metastore-admin"
            )

    def grant_seeded(self, principal: str) -> None:
        """What an admin grants a principal that registers models in and writes to the seeded
        volumes' schemas (the tests' own principal and users)."""
        for volume in self.volumes:
            catalog, schema, name = volume.split("/")[2:5]
            for securable, privileges in (
                (("catalog", catalog), {"USE_CATALOG"}),
                (("schema", f"{catalog}.{schema}"), {"USE_SCHEMA", "CREATE_MODEL"}),
                (("volume", f"{catalog}.{schema}.{name}"), {"READ_VOLUME", "WRITE_VOLUME"}),
            ):
                self.grants.setdefault(securable, {}).setdefault(principal, set()).update(
                    privileges
                )

    def holds(self, principal: str, securable: str, privilege: str) -> bool:
        """As owner of the securable or of what contains it, or by a grant there or above
        (Unity Catalog privileges pass down from catalog to schema to volume)."""
        parts = securable.split(".")
        tables = (
            ("catalog", self.catalogs),
            ("schema", self.schemas),
            ("volume", self.volume_infos),
        )
        for depth, (kind, table) in enumerate(tables[: len(parts)]):
            name = ".".join(parts[: depth + 1])
            if table.get(name, {}).get("owner") == principal:
                return True
            held = self.grants.get((kind, name), {}).get(principal, set())
            if privilege in held or "ALL_PRIVILEGES" in held:
                return True
        return False

    def refuse_without(self, principal: str, securable: str, privilege: str) -> Response | None:
        """USE CATALOG and USE SCHEMA on the way down, then the privilege itself."""
        parts = securable.split(".")
        needed = [("USE_CATALOG", parts[0]), ("USE_SCHEMA", ".".join(parts[:2]))]
        for wanted, on in [*needed[: len(parts) - 1], (privilege, securable)]:
            if not self.holds(principal, on, wanted):
                kind = ("Catalog", "Schema", "Volume")[len(on.split(".")) - 1]
                return api_error(
                    403,
                    "PERMISSION_DENIED",
                    f"User does not have {wanted.replace('_', ' ')} on {kind} '{on}'.",
                )
        return None

    @staticmethod
    def volume_info(catalog: str, schema: str, name: str, owner: str) -> dict:
        return {
            "catalog_name": catalog,
            "schema_name": schema,
            "name": name,
            "full_name": f"{catalog}.{schema}.{name}",
            "volume_type": "MANAGED",
            "owner": owner,
            "storage_location": f"s3://standin/{catalog}/{schema}/{name}",
        }

    # --- dispatch ---------------------------------------------------------------------------
    def handle(self, request: Request, principal: str, base_url: str) -> Response | None:
        path = request.path
        if path.startswith("/api/2.1/unity-catalog/"):
            return self.unity_catalog(request, principal, path[len("/api/2.1/unity-catalog/") :])
        if path == "/api/2.0/apps" or path.startswith("/api/2.0/apps/"):
            return self.app_call(request, principal, path[len("/api/2.0/apps") :], base_url)
        if path.startswith("/api/2.0/workspace/"):
            return self.workspace(request, principal, path[len("/api/2.0/workspace/") :])
        if path.startswith("/api/2.0/permissions/directories/"):
            return self.directory_permissions(request, path.rsplit("/", 1)[1])
        return None

    # --- Unity Catalog ----------------------------------------------------------------------
    def unity_catalog(self, request: Request, principal: str, rest: str) -> Response:
        body = request.get_json(silent=True) or {}
        kind, _, name = rest.partition("/")
        if kind == "catalogs":
            return self.securables(request, principal, self.catalogs, name, body, "catalog")
        if kind == "schemas":
            return self.securables(request, principal, self.schemas, name, body, "schema")
        if kind == "volumes":
            return self.securables(request, principal, self.volume_infos, name, body, "volume")
        if kind == "permissions":
            return self.permissions(request, name)
        if kind == "effective-permissions":
            return self.effective(request, name)
        return api_error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.path}'")

    def securables(
        self, request: Request, principal: str, table: dict, name: str, body: dict, kind: str
    ) -> Response:
        if request.method == "GET" and not name:
            listed = [v for v in table.values() if self.listed(v, request.args, kind)]
            key = {"catalog": "catalogs", "schema": "schemas", "volume": "volumes"}[kind]
            return json_response({key: sorted(listed, key=lambda v: v.get("full_name", v["name"]))})
        if request.method == "POST" and not name:
            return self.create_securable(principal, table, body, kind)
        if name not in table:
            code = {"catalog": "CATALOG_DOES_NOT_EXIST", "schema": "SCHEMA_DOES_NOT_EXIST"}
            return api_error(
                404, code.get(kind, "NOT_FOUND"), f"{kind.title()} '{name}' does not exist."
            )
        if request.method == "GET":
            return json_response(table[name])
        if request.method == "DELETE":
            del table[name]
            if kind == "volume":
                self.volumes.remove("/Volumes/" + name.replace(".", "/"))
            return json_response({})
        return api_error(405, "METHOD_NOT_ALLOWED", request.method)

    @staticmethod
    def listed(item: dict, args: Any, kind: str) -> bool:
        if kind == "schema":
            return item["catalog_name"] == args.get("catalog_name")
        if kind == "volume":
            return (item["catalog_name"], item["schema_name"]) == (
                args.get("catalog_name"),
                args.get("schema_name"),
            )
        return True

    def create_securable(self, principal: str, table: dict, body: dict, kind: str) -> Response:
        name = body.get("name", "")
        if not _NAME.fullmatch(name):
            return api_error(400, "INVALID_PARAMETER_VALUE", f"Invalid {kind} name '{name}'.")
        if kind == "catalog":
            full = name
            item = {"name": name, "owner": principal}
        elif kind == "schema":
            if body.get("catalog_name") not in self.catalogs:
                return api_error(
                    404,
                    "CATALOG_DOES_NOT_EXIST",
                    f"Catalog '{body.get('catalog_name')}' does not exist.",
                )
            full = f"{body['catalog_name']}.{name}"
            item = {
                "name": name,
                "catalog_name": body["catalog_name"],
                "full_name": full,
                "owner": principal,
            }
        else:
            parent = f"{body.get('catalog_name')}.{body.get('schema_name')}"
            if parent not in self.schemas:
                return api_error(404, "SCHEMA_DOES_NOT_EXIST", f"Schema '{parent}' does not exist.")
            if body.get("volume_type") not in ("MANAGED", "EXTERNAL"):
                return api_error(
                    400, "INVALID_PARAMETER_VALUE", "volume_type must be MANAGED or EXTERNAL."
                )
            full = f"{parent}.{name}"
            item = self.volume_info(body["catalog_name"], body["schema_name"], name, principal)
        if full in table:
            return api_error(
                409, f"{kind.upper()}_ALREADY_EXISTS", f"{kind.title()} '{full}' already exists."
            )
        table[full] = item
        if kind == "volume":
            self.volumes.append("/Volumes/" + full.replace(".", "/"))
            (self.root / "volumes" / "Volumes" / full.replace(".", "/")).mkdir(
                parents=True, exist_ok=True
            )
        return json_response(item)

    def permissions(self, request: Request, rest: str) -> Response:
        kind, _, full_name = rest.partition("/")
        held = self.grants.setdefault((kind.lower(), full_name), {})
        if request.method == "PATCH":
            for change in (request.get_json(silent=True) or {}).get("changes", []):
                privileges = held.setdefault(change["principal"], set())
                privileges |= set(change.get("add", []))
                privileges -= set(change.get("remove", []))
        assignments = [
            {"principal": p, "privileges": sorted(privs)} for p, privs in sorted(held.items())
        ]
        return json_response({"privilege_assignments": assignments})

    def effective(self, request: Request, rest: str) -> Response:
        kind, _, full_name = rest.partition("/")
        principal = request.args.get("principal")
        found: dict[str, list[dict]] = {}
        parts = full_name.split(".")
        # Privileges are inherited from the catalog and schema above a securable.
        for depth, parent_kind in enumerate(("catalog", "schema", kind.lower())[: len(parts)]):
            parent = ".".join(parts[: depth + 1])
            for who, privs in self.grants.get((parent_kind, parent), {}).items():
                if principal and who != principal:
                    continue
                found.setdefault(who, []).extend(
                    {"privilege": p, "inherited_from_name": parent if parent != full_name else None}
                    for p in sorted(privs)
                )
        return json_response(
            {"privilege_assignments": [{"principal": w, "privileges": p} for w, p in found.items()]}
        )

    # --- Apps --------------------------------------------------------------------------------
    def app_call(self, request: Request, principal: str, rest: str, base_url: str) -> Response:
        body = request.get_json(silent=True) or {}
        if rest == "" and request.method == "POST":
            return self.create_app(body, principal)
        if rest == "" and request.method == "GET":
            return json_response({"apps": [self.app_view(a) for a in self.apps.values()]})
        name, _, sub = rest.lstrip("/").partition("/")
        app = self.apps.get(name)
        if app is None:
            return api_error(
                404, "RESOURCE_DOES_NOT_EXIST", f"App with name {name} does not exist."
            )
        self.refresh(app)
        action = (request.method, sub.split("/", 1)[0])
        if action == ("GET", ""):
            return json_response(self.app_view(app))
        if action == ("PATCH", ""):
            return self.replace_app(app, body)
        if action == ("DELETE", ""):
            return self.delete_app(app)
        if action == ("POST", "update"):
            return self.masked_update(app, body)
        if action == ("GET", "update"):
            return json_response(app.get("_last_update") or {"status": {"state": "NOT_UPDATED"}})
        if action == ("POST", "start"):
            return self.start_app(app)
        if action == ("POST", "stop"):
            return self.stop_app(app)
        if action == ("POST", "deployments"):
            return self.deploy(app, body)
        if action == ("GET", "deployments") and "/" in sub:
            deployment = self.deployments.get(sub.split("/", 1)[1])
            if deployment is None:
                return api_error(404, "RESOURCE_DOES_NOT_EXIST", "No such deployment.")
            return json_response(deployment)
        return api_error(404, "ENDPOINT_NOT_FOUND", f"{request.method} {request.path}")

    @staticmethod
    def app_view(app: dict) -> dict:
        return {k: v for k, v in app.items() if not k.startswith("_")}

    def create_app(self, body: dict, principal: str) -> Response:
        name = body.get("name", "")
        if not _APP_NAME.fullmatch(name):
            return api_error(
                400,
                "INVALID_PARAMETER_VALUE",
                "App name must contain only lowercase alphanumeric characters and hyphens, "
                "and be between 2 and 30 characters long.",
            )
        if name in self.apps:
            return api_error(
                409, "RESOURCE_ALREADY_EXISTS", f"An app with name {name} already exists."
            )
        client_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"standin-app-{name}"))
        secret = "dose" + secrets.token_hex(16)
        self.register_client(client_id, secret)
        app = {
            "name": name,
            "description": body.get("description", ""),
            "resources": body.get("resources", []),
            "user_api_scopes": body.get("user_api_scopes", []),
            "service_principal_client_id": client_id,
            "service_principal_name": f"app-{name}",
            "url": f"https://{app_host(name)}:{self.proxy_port}",
            "app_status": {"state": "UNAVAILABLE", "message": "App has not been deployed yet."},
            "creator": principal,
            "create_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "_client_secret": secret,
        }
        self.start_compute(app, redeploy=False)
        self.apps[name] = app
        self.grant_resources(app)
        return json_response(self.app_view(app))

    def start_compute(self, app: dict, redeploy: bool) -> None:
        """New or restarted compute takes `app_start_seconds` to become ACTIVE."""
        app["compute_status"] = {"state": "STARTING", "message": "App compute is starting."}
        app["_active_at"] = time.monotonic() + self.app_start_seconds
        app["_redeploy"] = redeploy

    def refresh(self, app: dict) -> None:
        """Time passes: STARTING compute becomes ACTIVE, and a restarted app redeploys its
        last active deployment on its own (so a deploy right after a start is refused)."""
        if app["compute_status"]["state"] != "STARTING" or time.monotonic() < app["_active_at"]:
            return
        app["compute_status"] = {"state": "ACTIVE", "message": "App compute is active."}
        last = app.get("active_deployment")
        if app.pop("_redeploy", False) and last:
            self.start_deployment(app, last["source_code_path"])

    def replace_app(self, app: dict, body: dict) -> Response:
        """PATCH is a full replacement: a field not sent is cleared (the SDK says so)."""
        for key in _APP_MUTABLE:
            app[key] = body.get(key, [] if key != "description" else "")
        self.grant_resources(app)
        return json_response(self.app_view(app))

    def masked_update(self, app: dict, body: dict) -> Response:
        mask = [f.strip() for f in (body.get("update_mask") or "").split(",") if f.strip()]
        unknown = [f for f in mask if f not in _APP_MUTABLE and f != "*"]
        if not mask or unknown:
            return api_error(
                400, "INVALID_PARAMETER_VALUE", f"Invalid update_mask: {body.get('update_mask')!r}"
            )
        changed = body.get("app") or {}
        for key in _APP_MUTABLE if "*" in mask else mask:
            app[key] = changed.get(key, [] if key != "description" else "")
        self.grant_resources(app)
        update = {
            **{k: app[k] for k in _APP_MUTABLE},
            "status": {"state": "SUCCEEDED", "message": "App update succeeded."},
        }
        app["_last_update"] = update
        return json_response(update)

    def delete_app(self, app: dict) -> Response:
        self.runtime.stop_later(app["name"])
        del self.apps[app["name"]]
        return json_response(self.app_view(app))

    def start_app(self, app: dict) -> Response:
        if app["compute_status"]["state"] in ("STOPPED", "ERROR"):
            self.start_compute(app, redeploy=True)
        return json_response(self.app_view(app))

    def stop_app(self, app: dict) -> Response:
        pending = app.pop("pending_deployment", None)
        if pending and pending["status"]["state"] == "IN_PROGRESS":
            pending["status"] = {"state": "CANCELLED", "message": "App was stopped."}
        app["compute_status"] = {"state": "STOPPED", "message": "App compute is stopped."}
        app["app_status"] = {"state": "UNAVAILABLE", "message": "App status is unavailable."}
        self.runtime.stop_later(app["name"])
        return json_response(self.app_view(app))

    def grant_resources(self, app: dict) -> None:
        """Binding a UC securable grants the app's principal its privilege and the USE ones."""
        sp = app["service_principal_client_id"]
        for resource in app.get("resources", []):
            securable = resource.get("uc_securable")
            if not securable or securable.get("securable_type") != "VOLUME":
                continue
            full = securable["securable_full_name"]
            catalog, schema, _ = full.split(".")
            self.grants.setdefault(("catalog", catalog), {}).setdefault(sp, set()).add(
                "USE_CATALOG"
            )
            self.grants.setdefault(("schema", f"{catalog}.{schema}"), {}).setdefault(sp, set()).add(
                "USE_SCHEMA"
            )
            privileges = {"READ_VOLUME"} | (
                {"WRITE_VOLUME"} if securable["permission"] == "WRITE_VOLUME" else set()
            )
            self.grants.setdefault(("volume", full), {}).setdefault(sp, set()).update(privileges)

    def deploy(self, app: dict, body: dict) -> Response:
        name, compute = app["name"], app["compute_status"]["state"]
        if compute != "ACTIVE":
            return api_error(
                400,
                "INVALID_PARAMETER_VALUE",
                f"Cannot deploy app {name} as its compute is {compute}. "
                "Start the app compute to deploy the app.",
            )
        pending = app.get("pending_deployment")
        if pending and pending["status"]["state"] == "IN_PROGRESS":
            return api_error(
                400,
                "INVALID_PARAMETER_VALUE",
                f"Cannot deploy app {name} as there is an active deployment in progress.",
            )
        source = (body.get("source_code_path") or "").rstrip("/")
        if source not in self.workspace_dirs:
            return api_error(
                404, "RESOURCE_DOES_NOT_EXIST", f"Source code path {source} does not exist."
            )
        return json_response(self.start_deployment(app, source, body.get("mode", "SNAPSHOT")))

    def start_deployment(self, app: dict, source: str, mode: str = "SNAPSHOT") -> dict:
        deployment = {
            "deployment_id": uuid.uuid4().hex[:32],
            "source_code_path": source,
            "mode": mode,
            "status": {
                "state": "IN_PROGRESS",
                "message": "Preparing source code for new app deployment.",
            },
            "create_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.deployments[deployment["deployment_id"]] = deployment
        app["pending_deployment"] = deployment
        files = {
            path[len(source) + 1 :]: content
            for path, content in self.workspace_files.items()
            if path.startswith(source + "/")
        }
        self.runtime.deploy(app, deployment, files)
        return deployment

    # --- workspace files and folders ----------------------------------------------------------
    def folder_exists(self, path: str) -> bool:
        return (
            path in self.workspace_dirs
            or re.fullmatch(r"(/Workspace)?/Users/[^/]+", path) is not None
        )

    def may_manage(self, principal: str, path: str) -> bool:
        """CAN_MANAGE on the folder or one above it (folders pass permissions down);
        /Workspace/x and /x are the same folder."""
        parts = path.rstrip("/").removeprefix("/Workspace").split("/")
        for depth in range(len(parts), 0, -1):
            above = "/".join(parts[:depth]) or "/"
            if above in ("/Shared", f"/Users/{principal}"):
                return True
            if self.workspace_acls.get(above, {}).get(principal) == "CAN_MANAGE":
                return True
        return False

    def refuse_new_object(self, path: str, principal: str) -> Response | None:
        """Creating an object (an experiment) needs its folder, and CAN_MANAGE on it."""
        parent = path.rsplit("/", 1)[0] or "/"
        if not self.folder_exists(parent):
            return api_error(
                404, "RESOURCE_DOES_NOT_EXIST", f"Parent directory {parent} does not exist."
            )
        if not self.may_manage(principal, parent):
            return api_error(
                403,
                "PERMISSION_DENIED",
                f"{principal} does not have Manage permissions on {parent}. Please contact the "
                "owner or an administrator for access.",
            )
        return None

    def folder_id(self, path: str) -> int:
        return self.workspace_ids.setdefault(path, 4000000 + len(self.workspace_ids))

    def directory_permissions(self, request: Request, object_id: str) -> Response:
        folder = next((p for p, i in self.workspace_ids.items() if str(i) == object_id), None)
        if folder is None:
            return api_error(
                404, "RESOURCE_DOES_NOT_EXIST", f"Directory ({object_id}) does not exist."
            )
        acl = self.workspace_acls.setdefault(folder, {})
        if request.method in ("PATCH", "PUT"):
            if request.method == "PUT":
                acl.clear()
            for entry in (request.get_json(silent=True) or {}).get("access_control_list", []):
                who = next(
                    entry[k]
                    for k in ("user_name", "service_principal_name", "group_name")
                    if entry.get(k)
                )
                acl[who] = entry["permission_level"]
        return json_response(
            {
                "object_id": f"/directories/{object_id}",
                "object_type": "directory",
                "access_control_list": [
                    {
                        ("user_name" if "@" in who else "service_principal_name"): who,
                        "all_permissions": [{"permission_level": level, "inherited": False}],
                    }
                    for who, level in sorted(acl.items())
                ],
            }
        )

    def workspace(self, request: Request, principal: str, action: str) -> Response:
        if action == "mkdirs" and request.method == "POST":
            path = (request.get_json(silent=True) or {}).get("path", "").rstrip("/")
            parts = path.split("/")
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth]) or "/"
                if self.folder_exists(folder):
                    continue
                if refused := self.refuse_new_object(folder, principal):
                    return refused
                self.workspace_dirs.add(folder)
                self.workspace_acls[folder] = {principal: "CAN_MANAGE"}
            return json_response({})
        if action == "import" and request.method == "POST":
            path = request.form.get("path") or (request.get_json(silent=True) or {}).get("path", "")
            upload = request.files.get("content")
            content = (
                upload.read()
                if upload
                else base64.b64decode((request.get_json(silent=True) or {}).get("content", ""))
            )
            parent = path.rsplit("/", 1)[0]
            if not self.folder_exists(parent):
                return api_error(
                    404, "RESOURCE_DOES_NOT_EXIST", f"The parent folder ({parent}) does not exist."
                )
            overwrite = (request.form.get("overwrite") or "false").lower() == "true"
            if path in self.workspace_files and not overwrite:
                return api_error(400, "RESOURCE_ALREADY_EXISTS", f"{path} already exists.")
            self.workspace_files[path] = content
            return json_response({})
        if action == "get-status" and request.method == "GET":
            path = request.args.get("path", "")
            if path in self.workspace_files:
                return json_response(
                    {"path": path, "object_type": "FILE", "size": len(self.workspace_files[path])}
                )
            if self.folder_exists(path):
                return json_response(
                    {"path": path, "object_type": "DIRECTORY", "object_id": self.folder_id(path)}
                )
            return api_error(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
        return api_error(404, "ENDPOINT_NOT_FOUND", f"{request.method} {request.path}")
