"""Name and experiment-0 mapping of mlflow_app/experiment_folder.py, on a store in memory."""

from __future__ import annotations

import threading

import pytest
from mlflow.entities import Experiment, LifecycleStage
from mlflow.exceptions import MlflowException

from mlflow_app.experiment_folder import ExperimentFolder, ensure_experiment


class Store:
    """Experiments by path, as the workspace keeps them."""

    def __init__(self) -> None:
        self.experiments: dict[str, Experiment] = {}
        self.creations = 0

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self.experiments.get(name)

    def create_experiment(self, name: str) -> str:
        if name in self.experiments:
            raise MlflowException("exists", error_code="RESOURCE_ALREADY_EXISTS")
        self.creations += 1
        experiment_id = str(100 + len(self.experiments))
        self.experiments[name] = Experiment(experiment_id, name, "", LifecycleStage.ACTIVE)
        return experiment_id

    def restore_experiment(self, experiment_id: str) -> None:
        for name, found in self.experiments.items():
            if found.experiment_id == experiment_id:
                self.experiments[name] = Experiment(experiment_id, name, "", LifecycleStage.ACTIVE)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("churn", "/Shared/team/churn"),
        ("a/b", "/Shared/team/a/b"),
        ("/Users/me/x", "/Users/me/x"),
        ("/Shared/team/x", "/Shared/team/x"),
    ],
)
def test_names_map_in_and_back(typed: str, stored: str) -> None:
    folder = ExperimentFolder("/Shared/team/")
    assert folder.stored(typed) == stored
    assert folder.stored(folder.shown(stored)) == stored
    assert folder.shown("/Shared/teammate/x") == "/Shared/teammate/x"


def test_experiment_0_is_created_once_however_many_ask() -> None:
    store, folder = Store(), ExperimentFolder("/Shared/team")
    ids: list[str | None] = []
    askers = [
        threading.Thread(target=lambda: ids.append(folder.experiment_id(store, "0")))
        for _ in range(8)
    ]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    assert set(ids) == {store.experiments["/Shared/team/Default"].experiment_id}
    assert store.creations == 1
    assert folder.experiment_id(store, "7") == "7"


def test_a_deleted_default_is_restored_not_duplicated() -> None:
    store = Store()
    store.experiments["/Shared/team/Default"] = Experiment(
        "42", "/Shared/team/Default", "", LifecycleStage.DELETED
    )
    assert ensure_experiment(store, "/Shared/team/Default") == "42"
    assert store.experiments["/Shared/team/Default"].lifecycle_stage == LifecycleStage.ACTIVE
    assert store.creations == 0
