"""Databricks mode: MLflow's workspace stores, with host credentials resolved once per process.

MLflow's Databricks stores resolve credentials before every REST call by building a new
databricks-sdk WorkspaceClient, and each one fetches the workspace's host metadata
(`/.well-known/databricks-config`) over a fresh connection: one extra round trip per call.
The credentials they resolve are static (host, auth profile; the SDK refreshes OAuth tokens
itself), so each store built for a Databricks URI resolves them once.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from mlflow_app.config import Settings
from mlflow_app.mlflow_internals import plain_model_version, uc_registry_store_class
from mlflow_app.store_hooks import (
    StoreBuilder,
    registry_scheme,
    subclass_store,
    wrap_store_builders,
)

_DATABRICKS_SCHEMES = ("databricks", "databricks-uc")


def reuse_host_credentials(settings: Settings) -> None:
    """Make every store built for our Databricks URIs resolve its credentials once, within
    the upstream retry budget."""

    def wrap(build: StoreBuilder, uri: str) -> StoreBuilder:
        if registry_scheme(uri) not in _DATABRICKS_SCHEMES:
            return build
        return functools.partial(
            _build_with_credentials_once, build, settings.upstream_retry_seconds
        )

    wrap_store_builders(settings, wrap)


def _build_with_credentials_once(
    build: StoreBuilder, timeout: float, *args: Any, **kwargs: Any
) -> Any:
    store = build(*args, **kwargs)
    resolve = getattr(store, "get_host_creds", None)
    if callable(resolve):
        # RestStore keeps its `get_host_creds` constructor argument under this name.
        store.get_host_creds = CredentialsOnce(resolve, timeout)
    if isinstance(store, uc_registry_store_class()):
        cls = type(store)
        subclass_store(
            store,
            {
                "create_model_version": _unset_not_empty(cls.create_model_version),
                "list_webhooks_by_event": _no_webhooks,
                "search_registered_models": _uc_search(
                    cls.search_registered_models, ("filter_string", "order_by")
                ),
                "search_model_versions": _no_run_filter(
                    _plain_versions(_uc_search(cls.search_model_versions, ("order_by",)))
                ),
            },
        )
    return store


def _no_webhooks(store: Any, *args: Any, **kwargs: Any) -> Any:
    # Unity Catalog has no MLflow webhooks; MLflow's server asks after every registry event
    # and would log a traceback each time the store says it does not support the question.
    from mlflow.store.entities.paged_list import PagedList

    return PagedList([], None)


def _unset_not_empty(create: Callable) -> Callable:
    # MLflow's handler passes the request's run_link and model_id as "" when the client sent
    # none. The Unity Catalog store refuses any run_link that is not None, and looks up
    # logged model "" (an error) unless model_id is None, so a version registered from a
    # run's files (no logged model) would fail.
    signature = inspect.signature(create)

    @functools.wraps(create)
    def create_model_version(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        for name in ("run_link", "model_id"):
            if not bound.arguments.get(name):
                bound.arguments[name] = None
        with _refusals_as_bad_requests():
            return create(*bound.args, **bound.kwargs)

    return create_model_version


# How the Unity Catalog store words a model it refuses (no MLmodel, no signature); it raises
# them without an error code, which would make them 500s and have clients retry.
_REFUSED_MODELS = ("Unable to load model metadata", "Model passed for registration")


@contextlib.contextmanager
def _refusals_as_bad_requests() -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as error:
        if error.error_code != "INTERNAL_ERROR" or not error.message.startswith(_REFUSED_MODELS):
            raise
        raise MlflowException.invalid_parameter_value(error.message) from error


def _uc_search(search: Callable, unsupported: tuple[str, ...]) -> Callable:
    """MLflow's handlers pass an absent filter or order_by as "" or [], which the Unity
    Catalog store refuses as if given (a 500 on every run page and the models list). Empty
    means absent; a real value is the client's mistake: 400, not 500."""
    signature = inspect.signature(search)

    @functools.wraps(search)
    def uc_search(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        for name in unsupported:
            value = bound.arguments.get(name)
            if not value:
                bound.arguments[name] = None
            else:
                from mlflow.exceptions import MlflowException
                from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

                raise MlflowException(
                    f"Argument '{name}' is unsupported for models in the Unity Catalog.",
                    error_code=INVALID_PARAMETER_VALUE,
                )
        return search(*bound.args, **bound.kwargs)

    return uc_search


_RUN_FILTER = re.compile(r"\s*run_id\s*=\s*'[^']*'\s*")


def _plain_versions(search: Callable) -> Callable:
    # The UC store answers with ModelVersionSearch, whose `tags` and `aliases` are methods
    # that raise (UC's search carries neither), so MLflow's handler cannot serialise them and
    # every version listing (the model's page) was a 500. Plain versions with none serialise.
    from mlflow.store.entities.paged_list import PagedList

    @functools.wraps(search)
    def search_model_versions(*args: Any, **kwargs: Any) -> Any:
        found = search(*args, **kwargs)
        return PagedList([plain_model_version(v) for v in found], found.token)

    return search_model_versions


def _no_run_filter(search: Callable) -> Callable:
    # The UI's run page asks which versions were registered from the run; Unity Catalog
    # searches versions by model name only and refuses the question, which fails the whole
    # page. The answer is "none listed here"; the model's own page lists its versions.
    @functools.wraps(search)
    def search_model_versions(store: Any, filter_string: str | None = None, *args, **kwargs):
        if filter_string and _RUN_FILTER.fullmatch(filter_string):
            from mlflow.store.entities.paged_list import PagedList

            return PagedList([], None)
        return search(store, filter_string, *args, **kwargs)

    return search_model_versions


class CredentialsOnce:
    """Resolve credentials once; while resolving, callers wait at most `timeout` seconds.

    The SDK's host-metadata probe retries a failing workspace for minutes with no setting to
    shorten it, so during an outage a caller gets TEMPORARILY_UNAVAILABLE at the timeout while
    the resolution carries on; a failed resolution is retried by the next caller.
    """

    def __init__(self, resolve: Callable[[], Any], timeout: float) -> None:
        self._resolve = resolve
        self._timeout = max(1.0, timeout)
        self._lock = threading.Lock()
        self._pending: Future | None = None

    def __call__(self) -> Any:
        with self._lock:
            pending = self._pending
            if pending is None or (pending.done() and pending.exception() is not None):
                pending = self._pending = Future()
                threading.Thread(
                    target=self._run, args=(pending,), daemon=True, name="databricks-credentials"
                ).start()
        try:
            return pending.result(self._timeout)
        except FutureTimeout:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

            raise MlflowException(
                f"The Databricks workspace did not answer within {self._timeout:g} s while "
                "resolving the service principal's credentials",
                error_code=TEMPORARILY_UNAVAILABLE,
            ) from None

    def _run(self, pending: Future) -> None:
        try:
            pending.set_result(self._resolve())
        except BaseException as error:  # handed to the waiting callers
            pending.set_exception(error)
