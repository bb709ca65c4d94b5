"""Wrapping the stores MLflow's server builds, through its store registries' `register()`.

That is the seam store plugins use; MLflow has no other hook around store construction.
Metrics time store calls and Databricks mode reuses credentials through it.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

from mlflow_app.config import Settings
from mlflow_app.mlflow_internals import store_registries

StoreBuilder = Callable[..., Any]
# (builder MLflow has registered, the store URI) -> the builder to register instead
BuilderWrapper = Callable[[StoreBuilder, str], StoreBuilder]


def registry_scheme(uri: str) -> str:
    """The key MLflow's registries file a URI under (as `StoreRegistry.get_store_builder`)."""
    from mlflow.utils.uri import get_uri_scheme

    return uri if uri in {"databricks", "databricks-uc", "uc"} else get_uri_scheme(uri)


def subclass_store(store: Any, methods: dict[str, Callable]) -> Any:
    """Give one store object overriding methods by swapping in a subclass of its class.

    Subclassed, not proxied, so MLflow's isinstance checks on the store still hold.
    """
    cls = type(store)
    store.__class__ = type(cls.__name__, (cls,), {**methods, "__module__": cls.__module__})
    return store


def public_methods(store: Any) -> dict[str, Callable]:
    """The public methods defined on a store's class, by name."""
    cls = type(store)
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_")
        and isinstance(inspect.getattr_static(cls, name), types.FunctionType)
    }


def wrap_store_builders(settings: Settings, wrap: BuilderWrapper) -> None:
    """Replace the tracking and registry store builders for our URIs with wrapped ones."""
    tracking, registry_of_models = store_registries()
    for registry, uri in (
        (tracking, settings.backend_store_uri),
        (registry_of_models, settings.registry_store_uri),
    ):
        registry.register(registry_scheme(uri), wrap(registry.get_store_builder(uri), uri))
