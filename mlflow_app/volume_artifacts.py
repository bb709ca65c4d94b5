"""Databricks mode: experiments created through the service keep their artifacts in the volume.

The workspace records each experiment's artifact location, so the tracking store gives new
experiments one under the volume root; when the service proxies artifacts, clients are shown
`mlflow-artifacts:/` URIs for them, and reach the volume through the proxy with no Databricks
credentials of their own. Locations outside the volume (older experiments) pass unchanged.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable
from typing import Any

from mlflow_app.config import Settings
from mlflow_app.mlflow_internals import (
    set_artifact_location,
    set_model_version_source,
    set_run_artifact_uri,
)
from mlflow_app.store_hooks import (
    StoreBuilder,
    public_methods,
    subclass_store,
    wrap_store_builders,
)

PROXY_SCHEME = "mlflow-artifacts:"


class VolumeLocations:
    """Translate between locations the workspace stores and locations clients are shown."""

    def __init__(self, root: str, proxied: bool) -> None:
        self.root = root.rstrip("/")
        self.proxied = proxied

    def for_new_experiment(self) -> str:
        # The experiment id is not known before creation; a random directory never collides.
        return f"{self.root}/{uuid.uuid4().hex}"

    def shown(self, uri: str | None) -> str | None:
        if not self.proxied or not uri or not (uri == self.root or uri.startswith(self.root + "/")):
            return uri
        return PROXY_SCHEME + (uri[len(self.root) :] or "/")

    def stored(self, uri: str | None) -> str | None:
        if not self.proxied or not uri or not uri.startswith(PROXY_SCHEME):
            return uri
        path = uri[len(PROXY_SCHEME) :].lstrip("/")
        return f"{self.root}/{path}" if path else self.root


def keep_artifacts_in_volume(settings: Settings) -> None:
    """Wrap the tracking and registry stores MLflow builds so locations use the volume."""
    if settings.volume_root is None:
        return
    locations = VolumeLocations(settings.volume_root, settings.serve_artifacts)

    def wrap(build: StoreBuilder, uri: str) -> StoreBuilder:
        return functools.partial(_build_translated, build, locations)

    wrap_store_builders(settings, wrap)


def _build_translated(build: StoreBuilder, locations: VolumeLocations, *args: Any, **kw: Any):
    store = build(*args, **kw)
    translated = {
        name: _translated(method, locations) for name, method in public_methods(store).items()
    }
    return subclass_store(store, translated)


def _translated(method: Callable, locations: VolumeLocations) -> Callable:
    signature = inspect.signature(method)
    inbound = [n for n in ("artifact_location", "source") if n in signature.parameters]

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        if inbound:
            bound = signature.bind(*args, **kwargs)
            for name in inbound:
                bound.arguments[name] = locations.stored(bound.arguments.get(name))
            if method.__name__ == "create_experiment" and not bound.arguments.get(
                "artifact_location"
            ):
                bound.arguments["artifact_location"] = locations.for_new_experiment()
            args, kwargs = bound.args, bound.kwargs
        return _show(method(*args, **kwargs), locations)

    return call


def _show(result: Any, locations: VolumeLocations) -> Any:
    """Rewrite artifact locations in entities a store returns (in place; they are fresh)."""
    from mlflow.entities import Experiment, LoggedModel, Run, RunInfo
    from mlflow.entities.model_registry import ModelVersion

    if isinstance(result, Run):
        _show(result.info, locations)
    elif isinstance(result, RunInfo):
        set_run_artifact_uri(result, locations.shown(result.artifact_uri))
    elif isinstance(result, (Experiment, LoggedModel)):
        set_artifact_location(result, locations.shown(result.artifact_location))
    elif isinstance(result, ModelVersion):
        set_model_version_source(result, locations.shown(result.source))
    elif isinstance(result, (list, tuple)):
        for item in result:
            _show(item, locations)
    return result
