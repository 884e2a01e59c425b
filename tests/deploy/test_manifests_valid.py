"""Every overlay renders, and every object it renders is valid for Kubernetes 1.30 and Istio."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import K8S, OVERLAYS, Obj, is_istio, kustomize, validate

by_overlay = pytest.mark.parametrize("overlay", OVERLAYS)


@by_overlay
def test_every_object_validates(overlay: str, rendered: dict[str, list[Obj]]) -> None:
    """Each rendered object passes strict validation: kubernetes-validate or its Istio CRD schema."""
    objects = rendered[overlay]
    assert objects
    for obj in objects:
        validate(obj)  # raises on an invalid object and on a kind neither validator knows


@by_overlay
def test_istio_objects_are_present_and_schema_checked(overlay: str, rendered: dict[str, list[Obj]]) -> None:
    """The Istio kinds the issue asks for are all rendered (and so all went through the CRD schemas)."""
    kinds = {o["kind"] for o in rendered[overlay] if is_istio(o)}
    assert kinds == {"DestinationRule", "VirtualService", "PeerAuthentication", "AuthorizationPolicy"}


@by_overlay
def test_kubernetes_validate_command_passes(overlay: str, rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    """`kubernetes-validate --strict -k 1.30.0` on the rendered file exits 0 with no error line.

    (It only warns about the Istio kinds, which the test above checks against their CRDs.)"""
    out = tmp_path / f"{overlay}.yaml"
    result = subprocess.run(
        [shutil.which("kubectl") or "kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    out.write_text(result.stdout)
    check = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.30.0", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    lines = (check.stdout + check.stderr).splitlines()
    assert not [line for line in lines if line.startswith("ERROR")]
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len([o for o in rendered[overlay] if not is_istio(o)])


def test_base_and_mesh_render_on_their_own() -> None:
    """The base and the mesh kustomizations render alone too (what an overlay of one's own builds on)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    for path in (K8S / "base", K8S / "mesh"):
        for obj in kustomize(path):
            validate(obj)
