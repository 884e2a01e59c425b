"""Rendered overlays, once per test session (kubectl kustomize renders offline in ~30 ms each)."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import K8S, OVERLAYS, NoKubectl, Obj, kustomize


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    """overlay name -> the objects `kubectl kustomize deploy/k8s/overlays/<name>` renders."""
    try:
        return {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}
    except NoKubectl as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def production(rendered: dict[str, list[Obj]]) -> list[Obj]:
    return rendered["production"]
