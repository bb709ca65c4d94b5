"""The Kubernetes manifests render with kustomize, every object is valid against the Kubernetes
API schemas, they agree with one another, and they set only documented settings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlflow_app.config import SETTINGS

REPO = Path(__file__).parents[2]
KUSTOMIZE = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"
KNOWN = {s.name for s in SETTINGS} | {a for s in SETTINGS for a in s.aliases}
pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl renders the kustomizations (.ci/run: apt-get install kubernetes-client)",
)


def render(target: str) -> dict[str, dict]:
    """kind -> object, as `kubectl kustomize` renders the target."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZE / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {o["kind"]: o for o in yaml.safe_load_all(result.stdout) if o}


TARGETS = ["base", "overlays/production"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid_against_the_kubernetes_api_schemas(target: str) -> None:
    import kubernetes_validate

    objects = render(target)
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= set(
        objects
    )
    for kind, obj in objects.items():
        if kind == "ServiceMonitor":  # a Prometheus Operator CRD: checked below instead
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_the_objects_agree_with_one_another(target: str) -> None:
    objects = render(target)
    deployment, service = objects["Deployment"], objects["Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector and selector.items() <= labels.items()
    monitor = objects["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]

    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_APP_REPLICAS"] == str(hpa["spec"]["maxReplicas"])
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The database URI is a file from a Secret, never an environment value.
    assert "MLFLOW_BACKEND_STORE_URI" not in env
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secrets = {v["name"] for v in pod["spec"]["volumes"] if "secret" in v}
    uri_file = Path(env["MLFLOW_BACKEND_STORE_URI_FILE"])
    assert any(str(uri_file.parent) == mounts[name] for name in secrets)


@pytest.mark.parametrize("target", TARGETS)
def test_only_documented_settings_are_set(target: str) -> None:
    objects = render(target)
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in container["env"]} | set(objects["ConfigMap"]["data"])
    assert names <= KNOWN, names - KNOWN
