"""The optional ServiceMonitor component: renders on top of an overlay and scrapes ports the Services have.

(No Prometheus Operator CRD is available offline, so its schema is not checked: see the component.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.deploy.manifests import K8S, NoKubectl, kustomize, validate


def test_component_renders_with_production_and_matches_the_services(tmp_path: Path) -> None:
    """production + components/servicemonitor: the rest still validates; the monitor selects the auth and
    policy Services and scrapes their named HTTP ports at /metrics."""
    relative = Path(os.path.relpath(K8S, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {relative}/overlays/production\ncomponents:\n  - {relative}/components/servicemonitor\n"
    )
    try:
        objects = kustomize(tmp_path)
    except NoKubectl as exc:
        pytest.skip(str(exc))
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    for obj in objects:
        if obj is not monitor:
            validate(obj)
    assert monitor["metadata"]["namespace"] == "meshauth"
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    services = [o for o in objects if o["kind"] == "Service"]
    selected = [s for s in services if s["metadata"]["labels"].get(expression["key"]) in expression["values"]]
    assert {s["metadata"]["name"] for s in selected} == {"auth", "policy"}
    http_ports = {p["name"] for s in selected for p in s["spec"]["ports"] if p["name"].startswith("http-")}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == http_ports
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}
