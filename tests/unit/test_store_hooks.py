"""mlflow_app/store_hooks.py: the seam around the stores MLflow's server builds."""

from __future__ import annotations

import pytest

from mlflow_app.store_hooks import public_methods, registry_scheme, subclass_store


class Store:
    def search(self, n: int) -> list[int]:
        return list(range(n))

    def _private(self) -> None:
        pass

    @property
    def uri(self) -> str:
        return "x"


def test_a_subclassed_store_keeps_its_class_for_isinstance_and_gains_the_override() -> None:
    store = Store()

    def search(self, n: int) -> list[int]:
        return [*Store.search(self, n), -1]

    wrapped = subclass_store(store, {"search": search})
    assert wrapped is store and isinstance(store, Store)
    assert type(store).__name__ == "Store" and type(store) is not Store
    assert store.search(2) == [0, 1, -1]


def test_public_methods_are_the_plain_functions_only() -> None:
    assert set(public_methods(Store())) == {"search"}


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("databricks", "databricks"),
        ("databricks://profile", "databricks"),
        ("databricks-uc", "databricks-uc"),
        ("sqlite:///m.db", "sqlite"),
        ("postgresql+psycopg://u@h/db", "postgresql"),
    ],
)
def test_registry_scheme_is_the_key_mlflow_files_a_uri_under(uri: str, scheme: str) -> None:
    assert registry_scheme(uri) == scheme
