"""The `mlflow-app` command for the people who deploy the service.

`check` runs the startup self-check and prints its table; `config` prints the effective
settings (credentials masked) or, with `--table`, every setting with its default;
`db upgrade` creates or migrates the database schema and `db check` verifies it;
`setup databricks`, `deploy` and `doctor` set up, ship and diagnose the Databricks app;
`requirements` pins what Databricks Apps installs; `migrate` moves another MLflow
deployment's experiments, runs and models in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlflow_app.config import ConfigError, load_settings, settings_table
from mlflow_app.setup_databricks import ENV_FILE, STATE_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlflow-app", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check settings, stores and artifact root")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    config = commands.add_parser(
        "config",
        help="print the effective settings",
        description="Settings, read from the environment:\n\n" + settings_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_argument("--table", action="store_true", help="print every setting as Markdown")
    database = commands.add_parser("db", help="database schema commands")
    database.add_argument(
        "action",
        choices=("upgrade", "check"),
        help="upgrade: create or migrate the schema; check: verify it",
    )
    requirements = commands.add_parser(
        "requirements", help="print requirements.txt (what Databricks Apps installs), pinned"
    )
    requirements.add_argument("--write", action="store_true", help="write it to requirements.txt")
    _databricks_commands(commands)
    _migrate_command(commands)
    args = parser.parse_args(argv)

    if args.command in ("setup", "deploy", "doctor"):
        return _databricks(args)
    if args.command == "requirements":
        return _requirements(write=args.write)
    if args.command == "migrate":
        return _migrate(args)
    if args.command == "config" and args.table:
        print(settings_table())
        return 0
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"mlflow-app: {error}", file=sys.stderr)
        return 2
    if args.command == "config":
        for key, value in settings.describe().items():
            print(f"{key:24} {value}")
        return 0
    if args.command == "db":
        return _database(settings, "auto" if args.action == "upgrade" else "check")
    return _check(settings, as_json=args.json)


def _migrate_command(commands: argparse._SubParsersAction) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="copy experiments, runs, logged models and registered models from another MLflow",
        description="Copy from any MLflow tracking URI into this service (its own settings) or "
        "--to; a re-run copies only what is missing.",
    )
    migrate.add_argument("--from", dest="source", required=True, help="source tracking URI")
    migrate.add_argument("--to", dest="destination", help="destination tracking URI")
    migrate.add_argument("--dry-run", action="store_true", help="print counts, copy nothing")
    migrate.add_argument(
        "--experiment-folder", help="workspace folder for experiment names without a leading /"
    )
    migrate.add_argument(
        "--model-prefix", help="catalog.schema: registered models become catalog.schema.<name>"
    )
    migrate.add_argument(
        "--report",
        type=Path,
        default=Path("mlflow-migration-report.json"),
        help="where to write the report with every id (mlflow-migration-report.json)",
    )


def _migrate(args: argparse.Namespace) -> int:
    from mlflow_app.migrate import Options, migrate

    options = Options(
        source=args.source,
        destination=args.destination,
        dry_run=args.dry_run,
        experiment_folder=args.experiment_folder,
        model_prefix=args.model_prefix,
        report=args.report,
    )
    return migrate(options)


def _requirements(write: bool) -> int:
    from mlflow_app.pinned_requirements import RequirementsError, render

    try:
        text = render(Path.cwd())
    except (RequirementsError, FileNotFoundError) as error:
        print(f"mlflow-app: {error}", file=sys.stderr)
        return 1
    if write:
        Path("requirements.txt").write_text(text)
        print(f"wrote requirements.txt: {len(text.splitlines()) - 2} pinned packages")
    else:
        print(text, end="")
    return 0


def _database(settings, mode: str) -> int:
    from mlflow_app.migrations import SchemaError, prepare_schema
    from mlflow_app.store_environment import apply_store_environment

    apply_store_environment(settings)
    try:
        lines = prepare_schema(settings, mode)
    except SchemaError as error:
        print(f"mlflow-app: {error}", file=sys.stderr)
        return 1
    for line in lines or ["no SQL database is configured; nothing to do"]:
        print(line)
    return 0


def _check(settings, as_json: bool) -> int:
    """The startup self-check, run here: schema first (as MLFLOW_APP_MIGRATE says), then the
    checks, so a fresh database is created once rather than by two stores at the same time."""
    from mlflow_app.findings import render_table
    from mlflow_app.selfcheck import schema_and_checks
    from mlflow_app.store_environment import apply_store_environment

    apply_store_environment(settings)
    outcome = schema_and_checks(settings)
    if outcome.stop_reason:
        print(f"mlflow-app: {outcome.stop_reason}", file=sys.stderr)
        return 1
    results = outcome.results
    for _, note in outcome.schema_notes:
        print(f"schema: {note}", file=sys.stderr)
    if as_json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        print(render_table(results), end="")
    return 0 if all(r.ok for r in results) else 1


def _databricks_commands(commands: argparse._SubParsersAction) -> None:
    setup = commands.add_parser("setup", help="create and verify the workspace resources")
    setup.add_argument("platform", choices=("databricks",))
    setup.add_argument("--catalog", help="Unity Catalog catalog (created if missing)")
    setup.add_argument("--schema", default=None, help="schema for models and the volume (mlflow)")
    setup.add_argument("--volume", default=None, help="volume for artifacts (artifacts)")
    setup.add_argument("--app", default=None, help="Databricks app name (mlflow)")
    setup.add_argument("--dry-run", action="store_true", help="print every action, change nothing")
    setup.add_argument("--resume", action="store_true", help="continue a setup that stopped")
    setup.add_argument("--status", action="store_true", help="print the setup's progress")
    setup.add_argument("--reset", action="store_true", help="forget the setup's progress")
    setup.add_argument(
        "--delete", action="store_true", help="with --reset: delete what setup created"
    )
    setup.add_argument("--yes", action="store_true", help="confirm --delete without asking")
    setup.add_argument(
        "--env-file", type=Path, default=ENV_FILE, help=f"settings for clients (default {ENV_FILE})"
    )
    deploy = commands.add_parser("deploy", help="upload, deploy and validate the Databricks app")
    deploy.add_argument(
        "--timeout", type=float, default=1200, help="seconds to wait for compute and deployment"
    )
    doctor = commands.add_parser("doctor", help="find what is wrong and print the fix")
    doctor.add_argument("--app", help="diagnose this deployed Databricks app (else: locally)")
    for command in (setup, deploy, doctor):
        command.add_argument("--profile", help="Databricks CLI profile (~/.databrickscfg)")
        command.add_argument(
            "--state-file", type=Path, default=STATE_FILE, help=f"default {STATE_FILE}"
        )


def _databricks(args: argparse.Namespace) -> int:
    import requests
    from databricks.sdk.errors import DatabricksError

    from mlflow_app.error_text import describe_error
    from mlflow_app.setup_databricks import SetupFailed

    try:
        if args.command == "setup":
            return _setup(args)
        if args.command == "deploy":
            return _deploy(args)
        return _doctor(args)
    except SetupFailed as error:
        print(f"mlflow-app: {error}", file=sys.stderr)
        return 2
    except NoCredentials as error:
        print(f"mlflow-app: {error}", file=sys.stderr)
        return 2
    except (DatabricksError, requests.RequestException) as error:
        # A refusal or an unreachable workspace outside setup's steps: one line, no traceback.
        print(f"mlflow-app: {args.command} failed: {describe_error(error)}", file=sys.stderr)
        return 1


class NoCredentials(Exception):
    """No Databricks sign-in was found; the message says how to sign in."""


def _workspace(profile: str | None):  # -> databricks.sdk.WorkspaceClient
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    try:
        # A bounded retry budget: an unreachable host fails in seconds, not the SDK's 5 min.
        config = Config(profile=profile, retry_timeout_seconds=15, http_timeout_seconds=15)
    except ValueError as error:  # the SDK's "cannot configure default credentials"
        where = f"profile {profile}" if profile else "DATABRICKS_HOST or ~/.databrickscfg"
        raise NoCredentials(
            f"no Databricks credentials found in {where}; sign in with: databricks auth login "
            "--host https://<your-workspace>.cloud.databricks.com (then --profile <name>), or "
            f"set DATABRICKS_HOST and DATABRICKS_TOKEN ({str(error).splitlines()[0][:120]})"
        ) from None
    return WorkspaceClient(config=config)


def _setup(args: argparse.Namespace) -> int:
    from mlflow_app.setup_databricks import State, print_status, setup

    state = State.load(args.state_file)
    if args.status:
        return print_status(state, args.state_file)
    if args.reset:
        return _reset(args, state)
    if state and state.failed and not args.resume:
        print(
            f"mlflow-app: a setup stopped at step {state.failed['step']}; "
            "run with --resume to continue it, or --reset to start over",
            file=sys.stderr,
        )
        return 2
    if args.resume and state is None:
        print(f"mlflow-app: nothing to resume ({args.state_file} does not exist)", file=sys.stderr)
        return 2
    client = _workspace(args.profile)
    if not args.resume or state is None:
        state = State(target=_target(args, client))
    return setup(client, state, args.state_file, args.dry_run, sys.stdout, args.env_file)


def _reset(args: argparse.Namespace, state) -> int:
    from mlflow_app.setup_databricks import delete_created, undo_commands

    status = 0
    if args.delete and state and state.created:
        listed = ", ".join(f"{kind} {name}" for kind, name in reversed(state.created))
        if not args.yes:
            if not sys.stdin.isatty():
                print(
                    f"mlflow-app: --delete removes {listed}; add --yes to confirm", file=sys.stderr
                )
                return 2
            if _ask(f"delete {listed}? (yes/no)", "no").lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        status = delete_created(_workspace(args.profile), state, sys.stdout)
    elif state:
        for command in undo_commands(state):
            print(f"created by the forgotten setup; to remove it: {command}")
    if status == 0:
        args.state_file.unlink(missing_ok=True)
        print(f"forgot the setup's progress ({args.state_file})")
    return status


def _target(args: argparse.Namespace, client):  # -> Target
    from mlflow_app.setup_databricks import SetupFailed, Target

    values = {"schema": args.schema, "volume": args.volume, "app": args.app}
    defaults = {"schema": "mlflow", "volume": "artifacts", "app": "mlflow"}
    catalog = args.catalog
    if catalog is None:
        choices = _discover_catalogs(client)
        if not sys.stdin.isatty():
            raise SetupFailed(
                "--catalog is required; catalogs you can use: " + (", ".join(choices) or "none")
            )
        catalog = _ask("catalog", choices[0] if choices else "main", choices)
    for key, value in values.items():
        if value is None:
            values[key] = _ask(key, defaults[key]) if sys.stdin.isatty() else defaults[key]
    return Target(catalog=catalog, **values)


def _discover_catalogs(client) -> list[str]:
    try:
        return [c.name for c in client.catalogs.list() if c.name]
    except Exception:  # discovery is a convenience; the setup steps report real errors
        return []


def _ask(what: str, default: str, choices: list[str] | None = None) -> str:
    hint = f" ({', '.join(choices)})" if choices else ""
    answer = input(f"{what}{hint} [{default}]: ").strip()
    return answer or default


def _deploy(args: argparse.Namespace) -> int:
    import tempfile

    from mlflow_app.deploy import (
        DeployFailed,
        deploy_and_wait,
        deployable_files,
        oauth_token,
        readiness,
        report_readiness,
        smoke_test,
        upload,
    )
    from mlflow_app.setup_databricks import State

    state = State.load(args.state_file)
    if state is None or "settings" not in state.done:
        print("mlflow-app: run mlflow-app setup databricks first", file=sys.stderr)
        return 2
    root = Path.cwd()
    try:
        files = deployable_files(root)
        client = _workspace(args.profile)
        oauth_token(client)  # refused before anything changes: the proof needs OAuth
        upload(client, root, files, state.target.source_path, sys.stdout)
        deploy_and_wait(
            client,
            state.target.app,
            state.target.source_path,
            sys.stdout,
            timeout_seconds=args.timeout,
        )
        url = client.apps.get(state.target.app).url
        print(f"validating {url} through the Databricks Apps proxy:")
        if not report_readiness(*readiness(url, oauth_token(client)), sys.stdout):
            print("deployed, but not ready: see the fixes above")
            return 1
        with tempfile.TemporaryDirectory(prefix="mlflow-app-deploy-") as workdir:
            smoke_test(url, oauth_token(client), Path(workdir), sys.stdout)
    except DeployFailed as error:
        print(f"mlflow-app: {error}", file=sys.stderr)
        return 1
    print(f"deployed and ready: {url}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from mlflow_app.doctor import diagnose_app, print_findings

    if args.app:
        return print_findings(diagnose_app(_workspace(args.profile), args.app), sys.stdout)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"PROBLEM  settings           {error}")
        return 1
    return _check(settings, as_json=False)


if __name__ == "__main__":
    sys.exit(main())
