"""Databricks mode: MLflow's workspace stores, with host credentials resolved once per process.

MLflow's Databricks stores resolve credentials before every REST call by building a new
databricks-sdk WorkspaceClient, and each one fetches the workspace's host metadata
(`/.well-known/databricks-config`) over a fresh connection: one extra round trip per call.
The credentials they resolve are static (host, auth profile; the SDK refreshes OAuth tokens
itself), so each store built for a Databricks URI resolves them once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mlflow_app.config import Settings
from mlflow_app.store_hooks import StoreBuilder, registry_scheme, wrap_store_builders

_DATABRICKS_SCHEMES = ("databricks", "databricks-uc")


def reuse_host_credentials(settings: Settings) -> None:
    """Make every store built for our Databricks URIs resolve its credentials once."""

    def wrap(build: StoreBuilder, uri: str) -> StoreBuilder:
        if registry_scheme(uri) not in _DATABRICKS_SCHEMES:
            return build
        return functools.partial(_build_with_cached_credentials, build)

    wrap_store_builders(settings, wrap)


def _build_with_cached_credentials(build: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    store = build(*args, **kwargs)
    resolve = getattr(store, "get_host_creds", None)
    if callable(resolve):
        # RestStore keeps its `get_host_creds` constructor argument under this name. A failure
        # is not cached (functools.cache keeps results only), so a transient error is retried.
        store.get_host_creds = functools.cache(resolve)
    return store
