"""deploy/k8s/autoscaling: the KEDA ScaledObject and the saturation HPA are valid for their
schemas (strict: a misspelt field is an error) and scale the Deployment on the metric the
server exports.

The ScaledObject's schema is KEDA's own CRD schema, vendored in tests/deploy/schemas (its
``$comment`` names the upstream file and commit), so that nothing is downloaded at test time.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from servepath.service.metrics import Metrics
from tests.deploy.artifacts import K8S, load_manifests, only
from tests.deploy.test_k8s import KUBERNETES_VERSION

SCALING = K8S / "autoscaling"
KEDA_SCHEMA = Path(__file__).parent / "schemas" / "keda_scaledobject_v1alpha1.json"
SIGNAL = "servepath_saturation"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def one(path: Path) -> dict[str, Any]:
    (doc,) = docs(path)
    return doc


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as ``kubectl apply --validate=strict`` does:
    every object that lists its properties and keeps no unknown fields gets
    ``additionalProperties: false``."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def keda_validator() -> jsonschema.Draft7Validator:
    schema = strict(json.loads(KEDA_SCHEMA.read_text()))
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def scaled_object() -> dict[str, Any]:
    return one(SCALING / "keda" / "scaledobject.yaml")


@pytest.fixture(scope="module")
def saturation_hpa() -> dict[str, Any]:
    return one(SCALING / "saturation-hpa" / "hpa.yaml")


def test_the_scaled_object_is_valid_for_kedas_schema(
    keda_validator: jsonschema.Draft7Validator, scaled_object: dict[str, Any]
) -> None:
    assert (scaled_object["apiVersion"], scaled_object["kind"]) == (
        "keda.sh/v1alpha1",
        "ScaledObject",
    )
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in keda_validator.iter_errors(scaled_object)
    ]
    assert not errors, errors


def test_kedas_schema_refuses_a_misspelt_field(
    keda_validator: jsonschema.Draft7Validator, scaled_object: dict[str, Any]
) -> None:
    broken = copy.deepcopy(scaled_object)
    broken["spec"]["minReplicas"] = 2  # the HPA's name for minReplicaCount
    assert not keda_validator.is_valid(broken)
    del broken["spec"]["minReplicas"]
    broken["spec"]["triggers"][0].pop("type")
    assert not keda_validator.is_valid(broken)


@pytest.mark.parametrize(
    "path",
    [SCALING / "saturation-hpa" / "hpa.yaml", K8S / "ingress-nginx" / "controller-configmap.yaml"],
    ids=lambda p: p.parent.name,
)
def test_the_hpa_variant_and_the_controllers_config_are_valid_kubernetes(path: Path) -> None:
    for doc in docs(path):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_both_scale_the_deployment_on_the_metric_the_server_exports(
    scaled_object: dict[str, Any], saturation_hpa: dict[str, Any]
) -> None:
    exported = {m.name for m in Metrics().saturation.describe()}
    assert exported == {SIGNAL}
    deployment = only(load_manifests(), "Deployment")
    for target in (
        scaled_object["spec"]["scaleTargetRef"],
        saturation_hpa["spec"]["scaleTargetRef"],
    ):
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])

    (trigger,) = scaled_object["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "Value"
    assert re.search(rf"\b{SIGNAL}\b", trigger["metadata"]["query"])
    assert 0 < float(trigger["metadata"]["threshold"]) < 1, "1 is shedding: scale before it"

    (metric,) = saturation_hpa["spec"]["metrics"]
    assert metric["type"] == "External" and metric["external"]["metric"]["name"] == SIGNAL
    assert metric["external"]["target"] == {"type": "Value", "value": "500m"}
    adapter = yaml.safe_load(
        (SCALING / "saturation-hpa" / "prometheus-adapter-values.yaml").read_text()
    )
    (rule,) = adapter["rules"]["external"]
    assert rule["name"]["as"] == SIGNAL and SIGNAL in rule["seriesQuery"]


def test_the_variants_replace_the_cpu_hpa_and_keep_its_floor(
    scaled_object: dict[str, Any], saturation_hpa: dict[str, Any]
) -> None:
    base = load_manifests()
    cpu_hpa = only(base, "HorizontalPodAutoscaler")
    floor = only(base, "PodDisruptionBudget")["spec"]["minAvailable"]
    keda = one(SCALING / "keda" / "kustomization.yaml")
    assert keda["kind"] == "Component" and keda["resources"] == ["scaledobject.yaml"]
    (patch,) = keda["patches"]
    deleted = yaml.safe_load(patch["patch"])
    assert deleted["$patch"] == "delete", "two HPAs on one Deployment would fight"
    assert (deleted["kind"], deleted["metadata"]["name"]) == (
        "HorizontalPodAutoscaler",
        cpu_hpa["metadata"]["name"],
    )
    hpa = one(SCALING / "saturation-hpa" / "kustomization.yaml")
    assert hpa["kind"] == "Component" and hpa["patches"] == [{"path": "hpa.yaml"}]
    assert saturation_hpa["metadata"]["name"] == cpu_hpa["metadata"]["name"]
    assert scaled_object["spec"]["minReplicaCount"] > floor
    assert saturation_hpa["spec"]["minReplicas"] > floor
    # Both are offered, commented, where the kustomization lists its parts.
    text = (K8S / "kustomization.yaml").read_text()
    assert "#   - autoscaling/keda" in text and "#   - autoscaling/saturation-hpa" in text
