"""Copying one MLflow object from a source tracking server to a destination, idempotently.

Every object copied carries the tag `mlflow_app.migrated_from` naming its source; a run or
logged model also gets `mlflow_app.migration_complete` once everything in it is copied, so a
re-run skips what is complete and redoes what an interruption left half-written.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import LoggedModel, Metric, Param, Run, ViewType
from mlflow.entities.logged_model_output import LoggedModelOutput
from mlflow.entities.model_registry import ModelVersion, RegisteredModel

from mlflow_app.error_text import describe_error, redact

MIGRATED_FROM = "mlflow_app.migrated_from"
COMPLETE = "mlflow_app.migration_complete"
_PARAMS_PER_BATCH = 100  # MLflow's log_batch limits
_METRICS_PER_BATCH = 1000
_STAGE_ALIASES = {"Production": "production", "Staging": "staging"}


@dataclass
class Tally:
    """What a migration copied, skipped and failed, by kind, with ids."""

    copied: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)
    redone: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    # Passwords in the source and destination URIs: a driver's error may quote its URI.
    secrets: list[str] = field(default_factory=list, repr=False)

    def add(self, outcome: str, kind: str, what: str) -> None:
        getattr(self, outcome).setdefault(kind, []).append(redact(what, self.secrets))

    def as_report(self) -> dict[str, Any]:
        report = dataclasses.asdict(self)
        del report["secrets"]
        return report


def every(search: Callable[..., Any], **arguments: Any) -> Iterator[Any]:
    """Every item of a paged MLflow search."""
    token = None
    while True:
        page = search(**arguments, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


@dataclass
class Copier:
    """Copies between two MLflow clients; `dry_run` decides and counts, writing nothing."""

    source: MlflowClient
    destination: MlflowClient
    source_uri: str
    tally: Tally
    dry_run: bool = False
    runs: dict[str, str] = field(default_factory=dict)  # source run id -> destination's
    models: dict[str, str] = field(default_factory=dict)  # source logged model id -> dest's

    # --- experiments --------------------------------------------------------------------------
    def experiment(self, name: str, tags: dict[str, str]) -> str | None:
        found = self.destination.get_experiment_by_name(name)
        if found is not None:
            self.tally.add("skipped", "experiments", name)
            return found.experiment_id
        if self.dry_run:
            self.tally.add("copied", "experiments", name)
            return None
        kept = {k: v for k, v in tags.items() if not k.startswith("mlflow.")}
        created = self.destination.create_experiment(name, tags=kept)
        self.tally.add("copied", "experiments", name)
        return created

    # --- runs ---------------------------------------------------------------------------------
    def existing_runs(self, experiment_id: str | None) -> dict[str, Run]:
        """Runs copied into the destination experiment before, by source run id."""
        if experiment_id is None:
            return {}
        found = every(
            self.destination.search_runs,
            experiment_ids=[experiment_id],
            run_view_type=ViewType.ACTIVE_ONLY,
        )
        return {
            run.data.tags[MIGRATED_FROM]: run for run in found if MIGRATED_FROM in run.data.tags
        }

    def run(self, run: Run, experiment_id: str | None, existing: dict[str, Run]) -> int:
        """Copy one run; the bytes of artifacts it copied."""
        run_id = run.info.run_id
        earlier = existing.get(run_id)
        if earlier is not None and earlier.data.tags.get(COMPLETE) == "true":
            self.runs[run_id] = earlier.info.run_id
            self.tally.add("skipped", "runs", run_id)
            return 0
        if experiment_id is None and not self.dry_run:
            self.tally.add("failed", "runs", f"{run_id}: its experiment was not created")
            return 0
        if self.dry_run or experiment_id is None:
            self.tally.add("copied", "runs", run_id)
            return 0
        if earlier is not None:  # half-written by an interrupted migration: start it again
            self.destination.delete_run(earlier.info.run_id)
            self.tally.redone.append(run_id)
        copy = self.destination.create_run(
            experiment_id,
            start_time=run.info.start_time,
            tags={**run.data.tags, MIGRATED_FROM: run_id},
            run_name=run.info.run_name,
        )
        new_id = copy.info.run_id
        self.runs[run_id] = new_id
        self._run_data(run, new_id)
        copied = self._artifacts(run, new_id)
        if run.info.status != "RUNNING":
            self.destination.set_terminated(new_id, run.info.status, run.info.end_time)
        self.destination.set_tag(new_id, COMPLETE, "true")
        self.tally.add("copied", "runs", run_id)
        return copied

    def _run_data(self, run: Run, new_id: str) -> None:
        params = [Param(k, v) for k, v in run.data.params.items()]
        for start in range(0, len(params), _PARAMS_PER_BATCH):
            self.destination.log_batch(new_id, params=params[start : start + _PARAMS_PER_BATCH])
        history = [
            point
            for key in run.data.metrics
            for point in self.source.get_metric_history(run.info.run_id, key)
        ]
        for start in range(0, len(history), _METRICS_PER_BATCH):
            batch = [
                Metric(m.key, m.value, m.timestamp, m.step)
                for m in history[start : start + _METRICS_PER_BATCH]
            ]
            self.destination.log_batch(new_id, metrics=batch)
        if run.inputs and run.inputs.dataset_inputs:
            self.destination.log_inputs(new_id, datasets=run.inputs.dataset_inputs)

    def _artifacts(self, run: Run, new_id: str) -> int:
        with tempfile.TemporaryDirectory(prefix="mlflow-app-migrate-") as scratch:
            if not self.source.list_artifacts(run.info.run_id):
                return 0
            local = self.source.download_artifacts(run.info.run_id, "", scratch)
            size = _size(Path(local))
            self.destination.log_artifacts(new_id, local)
        self.tally.bytes_copied += size
        return size

    # --- logged models ------------------------------------------------------------------------
    def existing_models(self, experiment_id: str | None) -> dict[str, LoggedModel]:
        if experiment_id is None:
            return {}
        found = every(self.destination.search_logged_models, experiment_ids=[experiment_id])
        return {m.tags[MIGRATED_FROM]: m for m in found if MIGRATED_FROM in m.tags}

    def logged_model(
        self, model: LoggedModel, experiment_id: str | None, existing: dict[str, LoggedModel]
    ) -> int:
        earlier = existing.get(model.model_id)
        if earlier is not None and earlier.tags.get(COMPLETE) == "true":
            self.models[model.model_id] = earlier.model_id
            self.tally.add("skipped", "logged models", model.model_id)
            return 0
        if experiment_id is None and not self.dry_run:
            self.tally.add(
                "failed", "logged models", f"{model.model_id}: its experiment was not created"
            )
            return 0
        if self.dry_run or experiment_id is None:
            self.tally.add("copied", "logged models", model.model_id)
            return 0
        if earlier is not None:
            self.destination.delete_logged_model(earlier.model_id)
            self.tally.redone.append(model.model_id)
        copy = self.destination.create_logged_model(
            experiment_id,
            name=model.name,
            source_run_id=self.runs.get(model.source_run_id or ""),
            tags={**model.tags, MIGRATED_FROM: model.model_id},
            params=model.params,
            model_type=model.model_type,
        )
        self.models[model.model_id] = copy.model_id
        size = self._model_files(model, copy.model_id)
        if str(model.status) == "READY":
            self.destination.finalize_logged_model(copy.model_id, "READY")
        if copy.source_run_id:
            self.destination.log_outputs(copy.source_run_id, [LoggedModelOutput(copy.model_id, 0)])
        self.destination.set_logged_model_tags(copy.model_id, {COMPLETE: "true"})
        self.tally.add("copied", "logged models", model.model_id)
        return size

    def _model_files(self, model: LoggedModel, new_id: str) -> int:
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory(prefix="mlflow-app-migrate-") as scratch:
            local = download_artifacts(
                artifact_uri=model.artifact_location,
                dst_path=scratch,
                tracking_uri=self.source_uri,
            )
            size = _size(Path(local))
            if size:
                self.destination.log_model_artifacts(new_id, local)
        self.tally.bytes_copied += size
        return size

    # --- registered models --------------------------------------------------------------------
    def registered_model(self, name: str, new_name: str) -> None:
        """The model, its versions in order, their tags, its aliases, stages as aliases."""
        source = self.source.get_registered_model(name)
        if not self._registered_model_shell(source, new_name):
            return
        done = self._existing_versions(new_name)
        mapped: dict[str, str] = {}
        found = every(self.source.search_model_versions, filter_string=f"name='{name}'")
        versions = sorted(found, key=lambda v: int(v.version))
        for version in versions:
            key = f"{name}/{version.version}"
            if key in done:
                mapped[version.version] = done[key]
                self.tally.add("skipped", "model versions", key)
                continue
            try:
                new_version = self._version(version, new_name, key)
            except Exception as error:  # this version is reported; the others still move
                self.tally.add("failed", "model versions", f"{key}: {describe_error(error)}")
                continue
            if new_version is not None:
                mapped[version.version] = new_version
        if not self.dry_run:
            self._aliases(source, versions, new_name, mapped)

    def _registered_model_shell(self, source: RegisteredModel, new_name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            found = self.destination.get_registered_model(new_name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise  # e.g. no permission: reported for this model, not taken for absent
            found = None
        if found is not None:
            if found.tags.get(MIGRATED_FROM) != source.name:
                self.tally.add(
                    "failed",
                    "registered models",
                    f"{source.name}: '{new_name}' exists with other content (not migrated "
                    "from this model); rename it or choose another --model-prefix",
                )
                return False
            self.tally.add("skipped", "registered models", source.name)
            return True
        if not self.dry_run:
            self.destination.create_registered_model(
                new_name,
                tags={**source.tags, MIGRATED_FROM: source.name},
                description=source.description,
            )
        self.tally.add("copied", "registered models", source.name)
        return True

    def _existing_versions(self, new_name: str) -> dict[str, str]:
        if self.dry_run:
            return {}
        found = every(self.destination.search_model_versions, filter_string=f"name='{new_name}'")
        # Unity Catalog's search leaves tags out; a version's own get has them.
        tagged = (
            v if v.tags else self.destination.get_model_version(new_name, v.version) for v in found
        )
        return {v.tags[MIGRATED_FROM]: v.version for v in tagged if MIGRATED_FROM in v.tags}

    def _version(self, version: ModelVersion, new_name: str, key: str) -> str | None:
        source, model_id = self._version_source(version)
        if source is None:
            self.tally.add(
                "failed",
                "model versions",
                f"{key}: its files ({version.source}) are in no migrated run or logged model",
            )
            return None
        if self.dry_run:
            self.tally.add("copied", "model versions", key)
            return None
        created = self.destination.create_model_version(
            new_name,
            source,
            run_id=self.runs.get(version.run_id or ""),
            tags={**version.tags, MIGRATED_FROM: key},
            description=version.description,
            model_id=model_id,
        )
        self.tally.add("copied", "model versions", key)
        return created.version

    def _version_source(self, version: ModelVersion) -> tuple[str | None, str | None]:
        """Where the destination finds the version's files: its copied logged model, or the
        same path in its copied run."""
        model_id = getattr(version, "model_id", None)
        if not model_id and (version.source or "").startswith("models:/m-"):
            model_id = version.source.removeprefix("models:/").split("/", 1)[0]
        if model_id and (self.models.get(model_id) or self.dry_run):
            new_id = self.models.get(model_id, model_id)
            return f"models:/{new_id}", new_id
        run_id = version.run_id or ""
        if self.runs.get(run_id) or (self.dry_run and run_id):
            relative = _path_in_run(self.source, version.source, run_id)
            if relative is not None:
                return f"runs:/{self.runs.get(run_id, run_id)}/{relative}", None
        return None, None

    def _aliases(
        self,
        source: RegisteredModel,
        versions: list[ModelVersion],
        new_name: str,
        mapped: dict[str, str],
    ) -> None:
        aliases = dict(source.aliases or {})
        for version in versions:
            stage_alias = _STAGE_ALIASES.get(version.current_stage or "")
            if stage_alias and stage_alias not in aliases:
                aliases[stage_alias] = version.version
        for alias, version in aliases.items():
            if version in mapped:
                self.destination.set_registered_model_alias(new_name, alias, mapped[version])


def _path_in_run(source: MlflowClient, uri: str, run_id: str) -> str | None:
    """The path of `uri` inside run `run_id`'s artifacts, or None when it is elsewhere."""
    prefix = f"runs:/{run_id}/"
    if uri.startswith(prefix):
        return uri[len(prefix) :]
    root = source.get_run(run_id).info.artifact_uri.rstrip("/") + "/"
    return uri[len(root) :] if uri.startswith(root) else None


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
