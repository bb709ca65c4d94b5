"""`mlflow-app migrate`: move experiments, runs, logged models and registered models from
another MLflow deployment into this service, resumably.

The source is any tracking URI the MLflow client reads (a server, a SQL database, a
workspace). The destination is, by default, this service's own configuration, served on a
loopback port inside this process, so its store wrappers (volume, experiment folder, Unity
Catalog) apply exactly as for clients. Phases run in order with a progress bar each, and the
report names what was copied, skipped and failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

from mlflow import MlflowClient
from mlflow.entities import Experiment, ViewType

from mlflow_app.config import ConfigError, Settings, load_settings, mask_uri
from mlflow_app.error_text import describe_error, redact
from mlflow_app.migrate_copy import Copier, Tally, every

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    source: str
    destination: str | None = None  # None: this service's own configuration
    dry_run: bool = False
    experiment_folder: str | None = None  # bare experiment names go under this folder
    model_prefix: str | None = None  # `catalog.schema`: model names become UC names
    report: Path = Path("mlflow-migration-report.json")


class MigrationRefused(Exception):
    """A migration that cannot start; the message is one line with the fix."""


def migrate(options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the migration; 0 when nothing failed, 1 when something did, 2 when refused."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout: report
    try:
        with destination_uri(options) as target:
            source = _reachable(options.source, "source", "--from")
            destination = _reachable(target, "destination", "--to")
            tally = Tally(secrets=passwords_in(options.source, target))
            copier = Copier(source, destination, options.source, tally, options.dry_run)
            experiments = [
                e for e in every(source.search_experiments, view_type=ViewType.ACTIVE_ONLY)
            ]
            models = [m.name for m in every(source.search_registered_models)]
            _print_mapping(options, experiments, models, out)
            _copy_experiments(copier, options, experiments, err)
            _copy_registered_models(copier, options, models, err)
    except MigrationRefused as refused:
        print(f"mlflow-app: migrate: {refused}", file=err)
        return 2
    return _report(copier.tally, options, out)


@contextmanager
def destination_uri(options: Options) -> Iterator[str]:
    if options.destination:
        yield options.destination
        return
    try:
        settings = load_settings()
    except ConfigError as error:
        raise MigrationRefused(str(error)) from None
    if settings.registry_store_uri.startswith("databricks-uc") and not options.model_prefix:
        raise MigrationRefused(
            "the registry is Unity Catalog, whose model names are catalog.schema.model; "
            "pass --model-prefix <catalog>.<schema>"
        )
    with _own_service(settings) as url:
        yield url


@contextmanager
def _own_service(settings: Settings) -> Iterator[str]:
    """This service's MLflow app with its store wrappers, on a loopback port, no access
    control (the operator running the migration holds the store's credentials already)."""
    import logging

    from werkzeug.serving import make_server

    from mlflow_app.selfcheck import checked_apart
    from mlflow_app.store_environment import apply_store_environment

    settings = dataclasses.replace(
        settings, access=dataclasses.replace(settings.access, mode="none"), metrics=False
    )
    apply_store_environment(settings)
    # What the service does before it serves: the schema, then every check with the write
    # probe (which also creates the experiment folder and its Default experiment).
    outcome = checked_apart(settings)
    failed = [r for r in outcome.results if not r.ok]
    if outcome.stop_reason or failed:
        reason = outcome.stop_reason or "; ".join(f"{r.name}: {r.reason}" for r in failed)
        raise MigrationRefused(
            f"this service cannot take the migration yet ({reason}); run `mlflow-app check` "
            "for the fix"
        )
    from mlflow.server import app as flask_app

    from mlflow_app.app import mlflow_routes, prepare_stores

    prepare_stores(settings)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", 0, mlflow_routes(settings, flask_app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="migrate-destination")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@contextmanager
def _one_quick_try() -> Iterator[None]:
    """MLflow's HTTP settings for a probe: no retries, 10 s (a down server is said at once,
    not after minutes of backoff); the copies afterwards keep MLflow's patient defaults."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    before = {name: os.environ.get(name) for name in quick}
    os.environ.update(quick)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _reachable(uri: str, role: str, option: str) -> MlflowClient:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        with _one_quick_try():
            client.search_experiments(max_results=1)
    except Exception as error:  # any failure to read is the one line below
        reason = redact(describe_error(error), passwords_in(uri))
        raise MigrationRefused(
            f"cannot read the {role} '{mask_uri(uri)}' ({reason}); check {option} and its "
            "credentials"
        ) from None
    return client


def passwords_in(*uris: str) -> list[str]:
    return [password for uri in uris if (password := urlsplit(uri).password)]


def experiment_name(name: str, folder: str | None) -> str:
    if folder and not name.startswith("/"):
        return f"{folder.rstrip('/')}/{name}"
    return name


def model_name(name: str, prefix: str | None) -> str:
    """A Unity Catalog name under `prefix` (lower case, letters, digits and `_`), else as is."""
    if not prefix:
        return name
    return f"{prefix}.{re.sub(r'[^a-z0-9_]', '_', name.lower())}"


def _print_mapping(
    options: Options, experiments: list[Experiment], models: list[str], out: TextIO
) -> None:
    rows = [
        ("experiment", e.name, experiment_name(e.name, options.experiment_folder))
        for e in experiments
    ]
    rows += [("registered model", m, model_name(m, options.model_prefix)) for m in models]
    rows.append(("stage", "Production / Staging", "alias production / staging"))
    width = max(len(r[1]) for r in rows)
    print("what maps to what:", file=out)
    for kind, source, target in rows:
        print(f"  {kind:17} {source:{width}}  ->  {target}", file=out)


def _copy_experiments(
    copier: Copier, options: Options, experiments: list[Experiment], err: TextIO
) -> None:
    from tqdm import tqdm

    runs = {
        e.experiment_id: list(every(copier.source.search_runs, experiment_ids=[e.experiment_id]))
        for e in experiments
    }
    with tqdm(total=sum(map(len, runs.values())), desc="runs", unit="run", file=err) as bar:
        for experiment in experiments:
            new_name = experiment_name(experiment.name, options.experiment_folder)
            target = _guarded(
                copier, "experiments", experiment.name, copier.experiment, new_name, experiment.tags
            )
            existing = copier.existing_runs(target)
            for run in runs[experiment.experiment_id]:
                _guarded(copier, "runs", run.info.run_id, copier.run, run, target, existing)
                bar.set_postfix_str(f"{copier.tally.bytes_copied / 1e6:.1f} MB")
                bar.update()
            _copy_logged_models(copier, experiment.experiment_id, target, err)


def _copy_logged_models(copier: Copier, source_id: str, target: str | None, err: TextIO) -> None:
    from tqdm import tqdm

    models = list(every(copier.source.search_logged_models, experiment_ids=[source_id]))
    if not models:
        return
    existing = copier.existing_models(target)
    with tqdm(models, desc="logged models", unit="model", file=err) as bar:
        for model in bar:
            _guarded(
                copier,
                "logged models",
                model.model_id,
                copier.logged_model,
                model,
                target,
                existing,
            )
            bar.set_postfix_str(f"{copier.tally.bytes_copied / 1e6:.1f} MB")


def _copy_registered_models(
    copier: Copier, options: Options, models: list[str], err: TextIO
) -> None:
    from tqdm import tqdm

    for name in tqdm(models, desc="registered models", unit="model", file=err):
        new_name = model_name(name, options.model_prefix)
        _guarded(copier, "registered models", name, copier.registered_model, name, new_name)


def _guarded(
    copier: Copier, kind: str, what: str, copy: Callable[..., T], *arguments: Any
) -> T | None:
    """One object's copy; a failure is reported with its id and the migration goes on."""
    try:
        return copy(*arguments)
    except Exception as error:  # reported per object; the rest still moves
        copier.tally.add("failed", kind, f"{what}: {describe_error(error)}")
        return None


def _report(tally: Tally, options: Options, out: TextIO) -> int:
    verb = "would copy" if options.dry_run else "copied"
    kinds = sorted({*tally.copied, *tally.skipped, *tally.failed})
    print(f"{'':18} {verb:>10} {'skipped':>8} {'failed':>7}", file=out)
    for kind in kinds:
        counts = (len(getattr(tally, o).get(kind, [])) for o in ("copied", "skipped", "failed"))
        print(f"{kind:18} {next(counts):>10} {next(counts):>8} {next(counts):>7}", file=out)
    print(f"artifact bytes copied: {tally.bytes_copied}", file=out)
    if tally.redone:
        print(f"redone after an interruption: {', '.join(tally.redone)}", file=out)
    for kind, failures in tally.failed.items():
        for failure in failures:
            print(f"failed {kind[:-1]} {failure}", file=out)
    if not options.dry_run:
        options.report.write_text(json.dumps(tally.as_report(), indent=2) + "\n")
        print(f"report with every id: {options.report}", file=out)
    return 1 if tally.failed else 0
