"""The `mlflow-app` command for the people who deploy the service.

`check` runs the startup self-check and prints its table; `config` prints the effective
settings (credentials masked) or, with `--table`, every setting with its default;
`db upgrade` creates or migrates the database schema and `db check` verifies it.
"""

from __future__ import annotations

import argparse
import json
import sys

from mlflow_app.config import ConfigError, load_settings, settings_table


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
    args = parser.parse_args(argv)

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
    from mlflow_app.checks import render_table
    from mlflow_app.selfcheck import schema_and_checks
    from mlflow_app.store_environment import apply_store_environment

    apply_store_environment(settings)
    outcome = schema_and_checks(settings)
    if outcome[0] == "stop":
        print(f"mlflow-app: {outcome[1]}", file=sys.stderr)
        return 1
    _, notes, results = outcome
    for _, note in notes:
        print(f"schema: {note}", file=sys.stderr)
    if as_json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        print(render_table(results), end="")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
