"""Databricks mode: experiment names without a leading `/` live in one workspace folder.

The workspace accepts only absolute workspace paths as experiment names and has no experiment
`0`, which the UI's "create experiment" (a plain name) and every client that never calls
`set_experiment` rely on. Bare names map into `MLFLOW_APP_EXPERIMENT_FOLDER` and are shown
without it; experiment `0` (as an id, a trace's location or a trace search location) is the
folder's `Default` experiment, created on first use.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

from mlflow_app.config import Settings
from mlflow_app.mlflow_internals import set_experiment_name
from mlflow_app.store_hooks import (
    StoreBuilder,
    public_methods,
    subclass_store,
    wrap_store_builders,
)

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
# Per method, the parameter that holds an experiment name a client typed.
_NAME_PARAMETERS = {
    "create_experiment": "name",
    "get_experiment_by_name": "experiment_name",
    "rename_experiment": "new_name",
}


class ExperimentFolder:
    """Translate between the names clients use and the workspace paths the workspace keeps."""

    def __init__(self, folder: str) -> None:
        self.folder = folder.rstrip("/")
        self.default_path = f"{self.folder}/{DEFAULT_EXPERIMENT_NAME}"
        self._default_id: str | None = None
        self._lock = threading.Lock()

    def stored(self, name: str | None) -> str | None:
        if not name or name.startswith("/"):
            return name
        return f"{self.folder}/{name}"

    def shown(self, name: str) -> str:
        prefix = self.folder + "/"
        return name[len(prefix) :] if name.startswith(prefix) else name

    def experiment_id(self, store: Any, experiment_id: str | None) -> str | None:
        if experiment_id != DEFAULT_EXPERIMENT_ID:
            return experiment_id
        with self._lock:  # one creation per process, not one per concurrent request
            if self._default_id is None:
                self._default_id = ensure_experiment(store, self.default_path)
            return self._default_id


def ensure_experiment(store: Any, path: str) -> str:
    """The id of the experiment at `path`, restored or created when needed."""
    from mlflow.entities import LifecycleStage
    from mlflow.exceptions import MlflowException

    found = store.get_experiment_by_name(path)
    if found is None:
        try:
            return store.create_experiment(path)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = store.get_experiment_by_name(path)  # another worker created it first
    if found.lifecycle_stage == LifecycleStage.DELETED:
        store.restore_experiment(found.experiment_id)
    return found.experiment_id


def keep_bare_names_in_folder(settings: Settings) -> None:
    """Wrap the Databricks tracking store so bare names and experiment 0 map into the folder."""
    if settings.experiment_folder is None:
        return
    folder = ExperimentFolder(settings.experiment_folder)

    def wrap(build: StoreBuilder, uri: str) -> StoreBuilder:
        if uri != settings.backend_store_uri:
            return build
        return functools.partial(_build_mapped, build, folder)

    wrap_store_builders(settings, wrap)


def _build_mapped(build: StoreBuilder, folder: ExperimentFolder, *args: Any, **kw: Any) -> Any:
    store = build(*args, **kw)
    mapped = {
        name: _mapped(method, folder)
        for name, method in public_methods(store).items()
        if _takes_experiments(method)
    }
    return subclass_store(store, mapped)


# Parameters that hold experiment ids: one id, a list, a trace's info, trace search locations.
_ID_PARAMETERS = {"experiment_id", "experiment_ids", "trace_info", "locations", "location"}


def _takes_experiments(method: Callable) -> bool:
    parameters = inspect.signature(method).parameters
    return method.__name__ in (*_NAME_PARAMETERS, "search_experiments") or bool(
        _ID_PARAMETERS & parameters.keys()
    )


def _mapped(method: Callable, folder: ExperimentFolder) -> Callable:
    signature = inspect.signature(method)
    name_parameter = _NAME_PARAMETERS.get(method.__name__)

    @functools.wraps(method)
    def call(store: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(store, *args, **kwargs)
        arguments = bound.arguments
        if name_parameter in arguments:
            arguments[name_parameter] = folder.stored(arguments[name_parameter])
        for parameter in ("experiment_id", "location"):
            if isinstance(arguments.get(parameter), str):
                arguments[parameter] = folder.experiment_id(store, arguments[parameter])
        for parameter in ("experiment_ids", "locations"):
            if arguments.get(parameter):
                arguments[parameter] = [
                    folder.experiment_id(store, i) for i in arguments[parameter]
                ]
        if arguments.get("trace_info") is not None:
            _map_trace_experiment(store, arguments["trace_info"], folder)
        return _show(method(*bound.args, **bound.kwargs), folder)

    return call


def _map_trace_experiment(store: Any, trace_info: Any, folder: ExperimentFolder) -> None:
    """A trace a client sends with no experiment set names experiment 0 as its location."""
    location = getattr(trace_info.trace_location, "mlflow_experiment", None)
    if location is not None:
        location.experiment_id = folder.experiment_id(store, location.experiment_id)


def _show(result: Any, folder: ExperimentFolder) -> Any:
    """Experiments as clients named them (edited in place: stores return fresh entities)."""
    from mlflow.entities import Experiment

    if isinstance(result, Experiment):
        set_experiment_name(result, folder.shown(result.name))
    elif isinstance(result, list):
        for item in result:
            _show(item, folder)
    return result
