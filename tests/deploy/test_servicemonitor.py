"""The optional ServiceMonitor component: renders on top of an overlay and scrapes ports the Services have.

(No Prometheus Operator CRD is available offline, so its schema is not checked: see the component.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.deploy.manifests import K8S, NoKubectl, kustomize, validate


def test_component_renders_with_production_and_matches_the_services(tmp_path: Path) -> None:
    """production + components/servicemonitor: the rest still validates; the monitor selects the auth and
    policy Services and scrapes their named HTTP ports at /metrics; a PodMonitor scrapes the bus workers."""
    relative = Path(os.path.relpath(K8S, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {relative}/overlays/production\ncomponents:\n  - {relative}/components/servicemonitor\n"
    )
    try:
        objects = kustomize(tmp_path)
    except NoKubectl as exc:
        pytest.skip(str(exc))
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    (pod_monitor,) = [o for o in objects if o["kind"] == "PodMonitor"]
    for obj in objects:
        if obj is not monitor and obj is not pod_monitor:
            validate(obj)
    assert monitor["metadata"]["namespace"] == "meshauth"
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    services = [o for o in objects if o["kind"] == "Service"]
    selected = [s for s in services if s["metadata"]["labels"].get(expression["key"]) in expression["values"]]
    assert {s["metadata"]["name"] for s in selected} == {"auth", "policy"}
    http_ports = {p["name"] for s in selected for p in s["spec"]["ports"] if p["name"].startswith("http-")}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == http_ports
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}
    # The bus workers have no Service: the PodMonitor scrapes their pods' named metrics ports, which the
    # workers serve on (MESHAUTH_WORKER_METRICS_HOST 0.0.0.0, their default ports).
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "bus-worker"}
    (worker,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "bus-worker"]
    containers = worker["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", [])}
    assert (
        {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]}
        == set(ports)
        == {
            "audit-metrics",
            "analyt-metrics",
        }
    )
    assert sorted(ports.values()) == [9102, 9103]
    for c in containers:
        assert {"name": "MESHAUTH_WORKER_METRICS_HOST", "value": "0.0.0.0"} in c["env"]
