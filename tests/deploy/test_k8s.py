"""deploy/k8s: schema-valid manifests that agree with each other, the image and the service.

Schemas come from kubernetes-validate (bundled, no network), strict mode: an unknown or
misspelt field is an error, not ignored.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from servepath.cache.base import NoCache
from servepath.config import DEFAULT_GRACE_PERIOD, DEFAULT_MAX_BODY_BYTES, Settings
from servepath.model.loaded import LoadedModel, load_model
from servepath.service.app import ServepathApp
from servepath.store.base import NoLog
from tests.deploy.artifacts import (
    K8S,
    config_env_names,
    labels_match,
    load_manifests,
    only,
    read_image,
)

KUBERNETES_VERSION = "1.34.0"

Manifests = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return load_manifests()


def container(manifests: Manifests) -> dict[str, Any]:
    containers = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def pod_env(manifests: Manifests) -> dict[str, str]:
    """The environment the container gets from its ConfigMap and Secret."""
    env: dict[str, str] = {}
    for source in container(manifests).get("envFrom", []):
        if "configMapRef" in source:
            env.update(only(manifests, "ConfigMap")["data"])
        if "secretRef" in source:
            env.update(only(manifests, "Secret")["stringData"])
    for item in container(manifests).get("env", []):
        env[item["name"]] = item.get("value", "")
    return env


def probe(manifests: Manifests, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = container(manifests)[kind]["httpGet"]
    return found


def test_kustomization_lists_every_manifest_and_nothing_else(manifests: Manifests) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = set(manifests) - {"kustomization.yaml"}
    assert listed == present
    kinds = {doc["kind"] for name in listed for doc in manifests[name]}
    assert kinds >= {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
    }


def test_kustomization_image_entry_names_the_deployments_image(manifests: Manifests) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert [i["name"] for i in kustomization["images"]] == [container(manifests)["image"]]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
)
def test_manifest_is_valid_for_the_pinned_kubernetes_version(
    manifests: Manifests, name: str
) -> None:
    assert manifests[name], f"{name} holds no document"
    for doc in manifests[name]:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {doc['kind']} {path}: {exc.message}")


def test_validation_rejects_a_misspelt_field(manifests: Manifests) -> None:
    broken = yaml.safe_load(yaml.safe_dump(only(manifests, "Deployment")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_objects_point_at_each_other(manifests: Manifests) -> None:
    deployment = only(manifests, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels_match(deployment["spec"]["selector"], pod_labels)

    service = only(manifests, "Service")
    assert labels_match(service["spec"]["selector"], pod_labels)
    port_names = {p["name"] for p in container(manifests)["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for port in service_ports.values():
        assert port["targetPort"] in port_names

    ingress = only(manifests, "Ingress")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in service_ports
    assert ingress["spec"]["tls"], "the Ingress terminates no TLS"
    tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    assert {r["host"] for r in ingress["spec"]["rules"]} <= tls_hosts

    hpa = only(manifests, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2

    pdb = only(manifests, "PodDisruptionBudget")
    assert labels_match(pdb["spec"]["selector"], pod_labels)
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "drains could never proceed"

    refs = container(manifests)["envFrom"]
    assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} == {
        only(manifests, "ConfigMap")["metadata"]["name"]
    }
    assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} == {
        only(manifests, "Secret")["metadata"]["name"]
    }


def test_cache_and_store_urls_come_from_configmap_and_secret(manifests: Manifests) -> None:
    env = pod_env(manifests)
    assert set(env) <= config_env_names(), sorted(set(env) - config_env_names())
    settings = Settings.from_env(env)
    assert settings.cache_url.startswith("redis://")
    assert settings.store_url.startswith("postgresql://")
    assert "SERVEPATH_STORE_URL" in only(manifests, "Secret")["stringData"]


def test_only_the_ingress_controllers_addresses_are_trusted_proxies(
    manifests: Manifests,
) -> None:
    trusted = Settings.from_env(pod_env(manifests)).trusted_proxies
    assert not trusted.everyone and not trusted.forwarded
    assert trusted.networks, "the ingress controller's X-Forwarded-For would not be believed"
    # A few addresses, not the pod network: any pod in a /8 or /16 could set client_ip.
    for network in trusted.networks:
        assert network.num_addresses <= 16, network
    assert not trusted.trusts("10.1.2.3") and not trusted.trusts("10.0.0.5")


def test_secret_holds_placeholders_only(manifests: Manifests) -> None:
    for key, value in only(manifests, "Secret")["stringData"].items():
        assert "REPLACE_ME" in value, f"{key} looks like a real secret"
    assert "data" not in only(manifests, "Secret")


def test_container_matches_the_image(manifests: Manifests) -> None:
    image = read_image()
    spec = only(manifests, "Deployment")["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in container(manifests)["ports"]}
    # The serving port is the image's; the health port is the one the pod's settings name.
    assert [ports.pop("http")] == image.expose
    assert ports == {"health": Settings.from_env(pod_env(manifests)).health_port}
    assert image.user is not None
    assert spec["securityContext"]["runAsUser"] == int(image.user.split(":")[0])
    assert spec["securityContext"]["runAsNonRoot"] is True
    # A read-only root filesystem needs the data directory mounted writable.
    if container(manifests)["securityContext"].get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"] for m in container(manifests)["volumeMounts"]}
        data_dir = pod_env(manifests).get("SERVEPATH_DATA_DIR", image.env["SERVEPATH_DATA_DIR"])
        assert data_dir in mounts


def test_probes_use_the_named_port_that_servepath_listens_on(manifests: Manifests) -> None:
    settings = Settings.from_env(pod_env(manifests))
    ports = {p["name"]: p["containerPort"] for p in container(manifests)["ports"]}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = probe(manifests, kind)["port"]
        # The health port when the pod has one (probes never queue with the callers).
        assert ports.get(port, port) == (settings.health_port or settings.port), kind
    annotations = only(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == (settings.health_port or settings.port)


def test_the_service_does_not_expose_the_health_port(manifests: Manifests) -> None:
    health = Settings.from_env(pod_env(manifests)).health_port
    for port in only(manifests, "Service")["spec"]["ports"]:
        assert port["targetPort"] not in (health, "health")


def test_termination_grace_outlasts_prestop_plus_drain(manifests: Manifests) -> None:
    spec = only(manifests, "Deployment")["spec"]["template"]["spec"]
    command = container(manifests)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    drain = float(pod_env(manifests).get("SERVEPATH_GRACE_PERIOD", DEFAULT_GRACE_PERIOD))
    assert spec["terminationGracePeriodSeconds"] > pre_stop + drain
    strategy = only(manifests, "Deployment")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_ingress_body_limit_is_the_services_limit(manifests: Manifests) -> None:
    annotations = only(manifests, "Ingress")["metadata"]["annotations"]
    limit = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(limit) == DEFAULT_MAX_BODY_BYTES


# --- the probe paths against the real app -----------------------------------------------------


@pytest.fixture
async def ready_client(
    manifests: Manifests, example_model: LoadedModel
) -> AsyncIterator[httpx.AsyncClient]:
    app = ServepathApp(
        Settings.from_env(pod_env(manifests)), model=example_model, cache=NoCache(), store=NoLog()
    )
    await app.startup()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://pod"
    ) as client:
        yield client
    await app.shutdown()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["startupProbe", "readinessProbe", "livenessProbe"])
async def test_probe_path_answers_200_once_the_model_is_loaded(
    manifests: Manifests, ready_client: httpx.AsyncClient, kind: str
) -> None:
    response = await ready_client.get(probe(manifests, kind)["path"])
    assert response.status_code == 200, response.text


@pytest.mark.anyio
async def test_while_loading_only_liveness_passes(
    manifests: Manifests, example_model_path: Path
) -> None:
    release = threading.Event()

    def slow_loader() -> LoadedModel:
        release.wait(10)
        return load_model(example_model_path)

    app = ServepathApp(
        Settings.from_env(pod_env(manifests)),
        model_loader=slow_loader,
        cache=NoCache(),
        store=NoLog(),
    )
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://pod"
        ) as client:
            codes = {
                kind: (await client.get(probe(manifests, kind)["path"])).status_code
                for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            }
    finally:
        release.set()
        await app.shutdown()
    assert codes == {"startupProbe": 503, "readinessProbe": 503, "livenessProbe": 200}
