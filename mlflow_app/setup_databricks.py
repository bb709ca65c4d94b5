"""`mlflow-app setup databricks`: the workspace resources the service needs, step by step.

Each step looks before it acts, so a second run changes nothing. Progress is kept in a state
file, so a failed run resumes where it stopped (`--resume`); `--dry-run` prints each action
and changes nothing; a failure names the step, the grant or the unreachable host, and the
commands that finish or undo what was created.
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from mlflow_app.uc_grants import lacking, registry_needs

STATE_FILE = Path(".mlflow-app") / "databricks-setup.json"
ENV_FILE = Path(".env")
ENV_FILE_MARK = "# Written by mlflow-app setup databricks"
VOLUME_RESOURCE_KEY = "artifacts"  # app.yaml takes MLFLOW_DEFAULT_ARTIFACT_ROOT from it


class SetupFailed(Exception):
    """A step could not be done; the message says why and what to do."""


@dataclass
class Target:
    """What the user asked for; every field is kept in the state file."""

    catalog: str
    schema: str
    volume: str
    app: str
    source_path: str = ""  # workspace folder deploy uploads to; derived from the caller

    @property
    def volume_full_name(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.volume}"


@dataclass
class State:
    target: Target
    done: list[str] = field(default_factory=list)
    created: list[list[str]] = field(default_factory=list)  # [kind, name]
    facts: dict[str, str] = field(default_factory=dict)  # caller, app principal, url
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> State | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(target=Target(**data.pop("target")), **data)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


@dataclass
class Run:
    """One invocation: the client, the state, and where to report."""

    client: Any  # databricks.sdk.WorkspaceClient
    state: State
    dry_run: bool
    out: TextIO

    @property
    def target(self) -> Target:
        return self.state.target

    def say(self, line: str) -> None:
        print(line, file=self.out)

    def created(self, kind: str, name: str) -> None:
        self.state.created.append([kind, name])


def setup(
    client: Any,
    state: State,
    state_path: Path,
    dry_run: bool,
    out: TextIO,
    env_path: Path = ENV_FILE,
) -> int:
    """Run the steps not yet done; returns the exit status."""
    run = Run(client, state, dry_run, out)
    for name, step in STEPS:
        if name in state.done:
            run.say(f"{'[done]':10}{name}")
            continue
        try:
            outcome = step(run)
        except SetupFailed as failure:
            return _stop(run, state_path, name, str(failure))
        except Exception as error:  # an SDK or network error: explained, never a traceback
            return _stop(run, state_path, name, explain(error, run, name))
        run.say(f"{'[plan]' if dry_run else '[ok]':10}{name}: {outcome}")
        if not dry_run:
            state.done.append(name)
            state.failed = {}
            state.save(state_path)
    if dry_run:
        run.say("dry run: nothing was changed")
        return 0
    env_file = write_env_file(
        state, client.config.host, env_path, state_path.parent / "databricks.env"
    )
    run.say(f"wrote {env_file}: the app's URL and what MLflow clients export")
    run.say(f"setup complete; next: mlflow-app deploy (state in {state_path})")
    return 0


def _stop(run: Run, state_path: Path, step: str, reason: str) -> int:
    run.say(f"{'[FAILED]':10}{step}: {reason}")
    if run.dry_run:
        return 1
    run.state.failed = {"step": step, "reason": reason}
    run.state.save(state_path)
    run.say("to finish after fixing it: mlflow-app setup databricks --resume")
    for command in undo_commands(run.state):
        run.say(f"to undo: {command}")
    return 1


def delete_created(client: Any, state: State, out: TextIO) -> int:
    """Remove what setup created, newest first; returns the exit status."""
    from databricks.sdk.errors import NotFound

    from mlflow_app.error_text import describe_error

    removers = {
        "app": client.apps.delete,
        "volume": client.volumes.delete,
        "schema": client.schemas.delete,
        "catalog": client.catalogs.delete,
    }
    failed = 0
    for kind, name in reversed(state.created):
        try:
            removers[kind](name)
            print(f"deleted {kind} {name}", file=out)
        except NotFound:
            print(f"{kind} {name} was already gone", file=out)
        except Exception as error:  # reported per resource; the others are still removed
            failed += 1
            print(f"could not delete {kind} {name}: {describe_error(error)}", file=out)
    return 1 if failed else 0


def write_env_file(state: State, host: str, path: Path, fallback: Path) -> Path:
    """Settings for MLflow clients and local runs; an existing .env we did not write is kept,
    and ours goes to `fallback` instead."""
    if path.exists() and not path.read_text().startswith(ENV_FILE_MARK):
        path = fallback
    facts, target = state.facts, state.target
    volume = facts.get("volume", "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"{ENV_FILE_MARK} for app {target.app}; load it: set -a; . {path}; set +a\n"
        f"DATABRICKS_HOST={host}\n"
        "# MLflow clients log to the app through the Databricks Apps proxy, which takes OAuth\n"
        "# tokens only (not personal access tokens):\n"
        f"MLFLOW_TRACKING_URI={facts.get('app_url', '')}\n"
        f"# export MLFLOW_TRACKING_TOKEN=$(databricks auth token --host {host} | "
        "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
        "# The service run locally against the same workspace (mlflow-app check, gunicorn):\n"
        "# MLFLOW_TRACKING_URI=databricks MLFLOW_REGISTRY_URI=databricks-uc "
        f"MLFLOW_DEFAULT_ARTIFACT_ROOT={volume}\n"
    )
    return path


def undo_commands(state: State) -> list[str]:
    """Databricks CLI commands that remove what setup created, newest first."""
    verbs = {
        "app": "databricks apps delete {}",
        "volume": "databricks volumes delete {}",
        "schema": "databricks schemas delete {}",
        "catalog": "databricks catalogs delete {}",
    }
    return [verbs[kind].format(name) for kind, name in reversed(state.created) if kind in verbs]


# --- steps: each returns what it found or did -------------------------------------------------
def step_credentials(run: Run) -> str:
    me = run.client.current_user.me()
    run.state.facts["caller"] = me.user_name or str(me.id)
    if not run.target.source_path:
        run.target.source_path = f"/Workspace/Users/{me.user_name}/{run.target.app}"
    return f"signed in as {run.state.facts['caller']} at {run.client.config.host}"


def step_catalog(run: Run) -> str:
    return _ensure(
        run,
        "catalog",
        run.target.catalog,
        lambda: run.client.catalogs.get(run.target.catalog),
        lambda: run.client.catalogs.create(name=run.target.catalog),
    )


def step_schema(run: Run) -> str:
    full = f"{run.target.catalog}.{run.target.schema}"
    return _ensure(
        run,
        "schema",
        full,
        lambda: run.client.schemas.get(full),
        lambda: run.client.schemas.create(name=run.target.schema, catalog_name=run.target.catalog),
    )


def step_volume(run: Run) -> str:
    from databricks.sdk.service.catalog import VolumeType

    target = run.target
    return _ensure(
        run,
        "volume",
        target.volume_full_name,
        lambda: run.client.volumes.read(target.volume_full_name),
        lambda: run.client.volumes.create(
            catalog_name=target.catalog,
            schema_name=target.schema,
            name=target.volume,
            volume_type=VolumeType.MANAGED,
        ),
    )


def step_volume_access(run: Run) -> str:
    """Write, read back and delete a probe file: real permissions, not just listing."""
    path = f"/Volumes/{run.target.volume_full_name.replace('.', '/')}/.mlflow-app-setup-probe"
    if run.dry_run:
        return f"would write, read and delete {path}"
    token = uuid.uuid4().hex.encode()
    files = run.client.files
    files.upload(path, io.BytesIO(token), overwrite=True)
    try:
        if files.download(path).contents.read() != token:
            raise SetupFailed(f"{path} read back differs from what was written")
    finally:
        files.delete(path)
    return f"you can write to {run.target.volume_full_name}"


def step_app(run: Run) -> str:
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.apps import App

    name = run.target.app
    try:
        app = run.client.apps.get(name)
    except NotFound:
        app = None
    resource = _volume_resource(run.target)
    if app is None:
        if run.dry_run:
            return (
                f"would create app {name} with {run.target.volume_full_name} bound as `artifacts`"
            )
        app = run.client.apps.create(
            App(name=name, description="MLflow tracking server (mlflow-app)", resources=[resource])
        ).response
        run.created("app", name)
        verb = "created"
    elif not _has_volume_resource(app, run.target):
        if run.dry_run:
            return f"would bind {run.target.volume_full_name} to app {name} as `artifacts`"
        others = [r for r in (app.resources or []) if r.name != VOLUME_RESOURCE_KEY]
        # Only the resources, by update mask: PATCH would clear every field it is not sent.
        run.client.apps.create_update(
            name, "resources", app=App(name=name, resources=[*others, resource])
        ).result(timeout=timedelta(minutes=5))
        app = run.client.apps.get(name)
        verb = "bound the volume to"
    else:
        verb = "found"
    run.state.facts["app_principal"] = app.service_principal_client_id or ""
    run.state.facts["app_url"] = app.url or ""
    return f"{verb} app {name} (service principal {app.service_principal_client_id})"


def step_app_grants(run: Run) -> str:
    """The registry needs the app's principal to use the schema and create models in it."""
    from databricks.sdk.service.catalog import PermissionsChange, Privilege

    principal = run.state.facts.get("app_principal") or "<the app's service principal>"
    missing = lacking(run.client, principal, registry_needs(run.target.catalog, run.target.schema))
    if not missing:
        return f"{principal} already has USE CATALOG, USE SCHEMA and CREATE MODEL"
    described = "; ".join(
        f"{', '.join(p.replace('_', ' ') for p in privs)} on {kind} {name}"
        for (kind, name), privs in missing.items()
    )
    if run.dry_run:
        return f"would grant {principal}: {described}"
    for (kind, name), privs in missing.items():
        run.client.grants.update(
            kind,
            name,
            changes=[PermissionsChange(principal=principal, add=[Privilege(p) for p in privs])],
        )
    return f"granted {principal}: {described}"


def step_experiment_folder(run: Run) -> str:
    """Bare experiment names live in /Shared/<app> (the app's MLFLOW_APP_EXPERIMENT_FOLDER
    default); creating experiments there needs CAN MANAGE on it."""
    from databricks.sdk.service.workspace import (
        WorkspaceObjectAccessControlRequest,
        WorkspaceObjectPermissionLevel,
    )

    folder = experiment_folder(run.target.app)
    principal = run.state.facts.get("app_principal") or "<the app's service principal>"
    folder_id = _folder_id(run.client, folder)
    if folder_id is not None and _manages(run.client, folder_id, principal):
        return f"{principal} already manages {folder}"
    if run.dry_run:
        return f"would create {folder} and give {principal} CAN MANAGE on it"
    if folder_id is None:
        run.client.workspace.mkdirs(folder)
        folder_id = _folder_id(run.client, folder)
    run.client.workspace.update_permissions(
        "directories",
        str(folder_id),
        access_control_list=[
            WorkspaceObjectAccessControlRequest(
                service_principal_name=principal,
                permission_level=WorkspaceObjectPermissionLevel.CAN_MANAGE,
            )
        ],
    )
    return f"{principal} may create experiments in {folder}"


def _folder_id(client: Any, folder: str) -> int | None:
    from databricks.sdk.errors import NotFound

    try:
        return client.workspace.get_status(folder).object_id
    except NotFound:
        return None


def _manages(client: Any, folder_id: int, principal: str) -> bool:
    acl = client.workspace.get_permissions("directories", str(folder_id)).access_control_list
    return any(
        entry.service_principal_name == principal
        and any(p.permission_level.value == "CAN_MANAGE" for p in entry.all_permissions or [])
        for entry in acl or []
    )


def experiment_folder(app: str) -> str:
    return f"/Shared/{app}"


def step_settings(run: Run) -> str:
    facts = run.state.facts
    if run.dry_run:
        return "would record the app, volume and source path for mlflow-app deploy"
    facts["source_path"] = run.target.source_path
    facts["volume"] = f"/Volumes/{run.target.volume_full_name.replace('.', '/')}"
    target = run.target
    return f"app {target.app} deploys from {target.source_path}; artifacts in {facts['volume']}"


STEPS: tuple[tuple[str, Callable[[Run], str]], ...] = (
    ("credentials", step_credentials),
    ("catalog", step_catalog),
    ("schema", step_schema),
    ("volume", step_volume),
    ("volume_access", step_volume_access),
    ("app", step_app),
    ("app_grants", step_app_grants),
    ("experiment_folder", step_experiment_folder),
    ("settings", step_settings),
)

# The grant each step's action needs, for the message when the workspace refuses it.
GRANTS = {
    "catalog": "CREATE CATALOG on the metastore (or pass --catalog with an existing catalog)",
    "schema": "USE CATALOG and CREATE SCHEMA on catalog {catalog}",
    "volume": "USE SCHEMA and CREATE VOLUME on schema {catalog}.{schema}",
    "volume_access": "READ VOLUME and WRITE VOLUME on volume {catalog}.{schema}.{volume}",
    "app": "permission to create apps in this workspace (the Databricks Apps entitlement)",
    "app_grants": "MANAGE on catalog {catalog} and schema {catalog}.{schema} "
    "(or ownership), so you can grant the app's service principal",
    "experiment_folder": "CAN MANAGE on /Shared/{app}, or on /Shared to create it",
    "credentials": "a valid sign-in: DATABRICKS_HOST with DATABRICKS_TOKEN, or "
    "DATABRICKS_CONFIG_PROFILE",
}


def explain(error: Exception, run: Run, step: str) -> str:
    """One line: what was refused or unreachable, and what to do."""
    from databricks.sdk.errors import PermissionDenied, Unauthenticated

    from mlflow_app.error_text import error_line

    caller = run.state.facts.get("caller", "you")
    first_line = error_line(error).rstrip(". ")
    if isinstance(error, (PermissionDenied, Unauthenticated)):
        grant = GRANTS.get(step, "the permission this step needs").format(**asdict(run.target))
        return f"refused for {caller}: {first_line}. Needs: {grant}"
    if _is_network_error(error):
        return (
            f"could not reach the workspace at {run.client.config.host} ({first_line}); "
            "check DATABRICKS_HOST and the network"
        )
    return f"{type(error).__name__}: {first_line}"


def _is_network_error(error: BaseException) -> bool:
    import requests

    while error is not None:
        if isinstance(error, (requests.ConnectionError, requests.Timeout, ConnectionError)):
            return True
        if "Max retries exceeded" in str(error) or "Connection refused" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _ensure(run: Run, kind: str, name: str, get: Callable, create: Callable) -> str:
    from databricks.sdk.errors import NotFound

    try:
        get()
        return f"{kind} {name} exists"
    except NotFound:
        pass
    if run.dry_run:
        return f"would create {kind} {name}"
    create()
    run.created(kind, name)
    return f"created {kind} {name}"


def _volume_resource(target: Target) -> Any:
    from databricks.sdk.service.apps import (
        AppResource,
        AppResourceUcSecurable,
        AppResourceUcSecurableUcSecurablePermission,
        AppResourceUcSecurableUcSecurableType,
    )

    return AppResource(
        name=VOLUME_RESOURCE_KEY,
        description="MLflow artifacts",
        uc_securable=AppResourceUcSecurable(
            securable_full_name=target.volume_full_name,
            securable_type=AppResourceUcSecurableUcSecurableType.VOLUME,
            permission=AppResourceUcSecurableUcSecurablePermission.WRITE_VOLUME,
        ),
    )


def _has_volume_resource(app: Any, target: Target) -> bool:
    for resource in app.resources or []:
        securable = resource.uc_securable
        if (
            resource.name == VOLUME_RESOURCE_KEY
            and securable is not None
            and securable.securable_full_name == target.volume_full_name
            and securable.permission is not None
            and securable.permission.value == "WRITE_VOLUME"
        ):
            return True
    return False


def print_status(state: State | None, state_path: Path, out: TextIO = sys.stdout) -> int:
    if state is None:
        print(f"no setup in progress ({state_path} does not exist)", file=out)
        return 0
    for name, _ in STEPS:
        mark = (
            "done"
            if name in state.done
            else "FAILED"
            if state.failed.get("step") == name
            else "pending"
        )
        print(f"{mark:8} {name}", file=out)
    if state.failed:
        print(f"last failure: {state.failed['reason']}", file=out)
    for kind, name in state.created:
        print(f"created: {kind} {name}", file=out)
    return 0
