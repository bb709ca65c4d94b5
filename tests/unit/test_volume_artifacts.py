"""Locations the workspace stores vs. locations clients are shown (Databricks mode)."""

from __future__ import annotations

from mlflow_app.volume_artifacts import VolumeLocations

ROOT = "dbfs:/Volumes/main/ml/files/mlflow"


def test_volume_locations_are_shown_as_proxy_uris_and_stored_back() -> None:
    locations = VolumeLocations(ROOT, proxied=True)
    shown = locations.shown(f"{ROOT}/abc/run1/artifacts")
    assert shown == "mlflow-artifacts:/abc/run1/artifacts"
    assert locations.stored(shown) == f"{ROOT}/abc/run1/artifacts"
    assert locations.for_new_experiment().startswith(ROOT + "/")


def test_locations_outside_the_volume_pass_unchanged() -> None:
    locations = VolumeLocations(ROOT, proxied=True)
    for uri in (
        "dbfs:/databricks/mlflow-tracking/1/abc/artifacts",
        "dbfs:/Volumes/main/ml/files/mlflow-other/x",  # a sibling sharing the prefix
        "models:/m-123",
        None,
    ):
        assert locations.shown(uri) == uri
        assert locations.stored(uri) == uri


def test_without_the_proxy_clients_see_the_volume_itself() -> None:
    locations = VolumeLocations(ROOT, proxied=False)
    assert locations.shown(f"{ROOT}/abc") == f"{ROOT}/abc"
