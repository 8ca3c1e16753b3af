"""The Kubernetes manifests in deploy/kubernetes: every one valid against the Kubernetes schemas
(kubernetes-validate ships them, so this runs offline), and shaped as the README promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((f"{path.name}:{document['kind']}/{document['metadata']['name']}", document))
    return found


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == kind}


@pytest.mark.parametrize(("name", "document"), documents(), ids=[name for name, _ in documents()])
def test_every_manifest_is_valid(name: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_api_scales_out_with_probes_a_budget_and_an_autoscaler() -> None:
    api = by_kind("Deployment")["childlink-api"]
    assert api["spec"]["replicas"] >= 2
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert secrets == {"childlink-database"}
    assert by_kind("PodDisruptionBudget")["childlink-api"]["spec"]["minAvailable"] >= 1
    assert (
        by_kind("HorizontalPodAutoscaler")["childlink-api"]["spec"]["scaleTargetRef"]["name"]
        == "childlink-api"
    )
    assert by_kind("Deployment")["childlink-worker"]["spec"]["template"]["spec"]["containers"][0][
        "command"
    ] == [
        "childlink",
        "worker",
    ]


def test_migrations_run_as_the_owner_in_a_job() -> None:
    job = by_kind("Job")["childlink-migrate"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["childlink", "migrate"]
    names = {e["name"] for e in container["env"]}
    assert "CHILDLINK_MIGRATION_DATABASE_URL" in names


def test_the_api_reaches_only_postgresql_and_the_workers_also_the_outside() -> None:
    policies = by_kind("NetworkPolicy")
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    api_ports = {p["port"] for rule in policies["childlink-api"]["spec"]["egress"] for p in rule["ports"]}
    assert api_ports == {5432, 6432, 53}  # PostgreSQL, its PgBouncer, DNS
    assert not any(
        "ipBlock" in peer for rule in policies["childlink-api"]["spec"]["egress"] for peer in rule["to"]
    )
    outside = [
        peer["ipBlock"]
        for rule in policies["childlink-worker"]["spec"]["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer
    ]
    assert outside and outside[0]["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in outside[0]["except"]
