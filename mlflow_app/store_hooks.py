"""Wrapping the stores MLflow's server builds, through its store registries' `register()`.

That is the seam store plugins use; MLflow has no other hook around store construction.
Metrics time store calls and Databricks mode reuses credentials through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow_app.config import Settings

StoreBuilder = Callable[..., Any]
# (builder MLflow has registered, the store URI) -> the builder to register instead
BuilderWrapper = Callable[[StoreBuilder, str], StoreBuilder]


def registry_scheme(uri: str) -> str:
    """The key MLflow's registries file a URI under (as `StoreRegistry.get_store_builder`)."""
    from mlflow.utils.uri import get_uri_scheme

    return uri if uri in {"databricks", "databricks-uc", "uc"} else get_uri_scheme(uri)


def wrap_store_builders(settings: Settings, wrap: BuilderWrapper) -> None:
    """Replace the tracking and registry store builders for our URIs with wrapped ones."""
    from mlflow.server import handlers

    for registry, uri in (
        (handlers._tracking_store_registry, settings.backend_store_uri),
        (handlers._model_registry_store_registry, settings.registry_store_uri),
    ):
        registry.register(registry_scheme(uri), wrap(registry.get_store_builder(uri), uri))
