"""The deployment files agree with each other and with what the scale-out tests run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_registry_config_is_the_compose_one() -> None:
    """One registry configuration (the tests run deploy/compose/registry.yml): Kubernetes ships the same."""
    config = next(d for d in _documents(DEPLOY / "kubernetes" / "config.yaml") if d["kind"] == "ConfigMap")
    assert yaml.safe_load(config["data"]["registry.yml"]) == yaml.safe_load(
        (DEPLOY / "compose" / "registry.yml").read_text())


def test_kubernetes_references_resolve() -> None:
    """Every ConfigMap/Secret key a workload reads exists; kustomize lists every manifest."""
    docs = {path.name: _documents(path) for path in (DEPLOY / "kubernetes").glob("*.yaml")}
    kustomization = docs.pop("kustomization.yaml")[0]
    assert sorted(kustomization["resources"]) == sorted(n for n in docs if n != "secrets.example.yaml")
    provided: dict[tuple[str, str], set[str]] = {}
    for doc in (d for group in docs.values() for d in group):
        if doc["kind"] in ("ConfigMap", "Secret"):
            keys = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
            provided[(doc["kind"], doc["metadata"]["name"])] = keys
    workloads = [d for group in docs.values() for d in group if d["kind"] == "Deployment"]
    assert {w["metadata"]["name"] for w in workloads} == {"ecr-gateway", "ecr-registry"}
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                for kind, ref in (("ConfigMap", source.get("configMapKeyRef")), ("Secret", source.get("secretKeyRef"))):
                    if ref:
                        assert ref["key"] in provided[(kind, ref["name"])], f"{workload['metadata']['name']}: {ref}"
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                items = volume["secret"].get("items") or []
                assert {i["key"] for i in items} <= provided[("Secret", volume["secret"]["secretName"])]
            if "configMap" in volume:
                items = volume["configMap"].get("items") or []
                assert {i["key"] for i in items} <= provided[("ConfigMap", volume["configMap"]["name"])]
    gateway = next(w for w in workloads if w["metadata"]["name"] == "ecr-gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    budgets = [d for group in docs.values() for d in group if d["kind"] == "PodDisruptionBudget"]
    assert {b["metadata"]["name"] for b in budgets} == {"ecr-gateway", "ecr-registry"}


def test_compose_names_its_images_and_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yml").read_text())
    services = compose["services"]
    assert {"gateway-a", "gateway-b", "registry-1", "registry-2", "lb", "postgres", "prometheus", "s3"} <= set(
        services)
    for name, service in services.items():
        assert service.get("image"), f"{name} names no image"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./") and source not in ("./keys", "./tls") and not source.startswith("./keys/"):
                assert (DEPLOY / "compose" / source).exists(), f"{name}: {source} missing"
