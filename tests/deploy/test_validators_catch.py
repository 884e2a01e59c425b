"""The validators are not a formality: for every kind the overlays render, a misspelt field name and
a value of the wrong type each make validation fail."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.manifests import Obj, validate

INVALID = (jsonschema.ValidationError, kubernetes_validate.ValidationError)


def _one_of_each_kind(rendered: dict[str, list[Obj]]) -> dict[str, Obj]:
    kinds: dict[str, Obj] = {}
    for objects in rendered.values():
        for obj in objects:
            kinds.setdefault(obj["kind"], obj)
    return kinds


def _misspell(obj: Obj) -> Obj:
    """Rename the first field of the spec (or the object's last top-level field: a ConfigMap's ``data``,
    whose own keys are free-form) to a typo."""
    broken = copy.deepcopy(obj)
    spec = broken.get("spec")
    if isinstance(spec, dict) and spec:
        first = next(iter(spec))
        spec[first + "x"] = spec.pop(first)
        return broken
    last = list(broken)[-1]
    broken[last + "x"] = broken.pop(last)
    return broken


def _first_scalar_path(value: Any, path: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    if isinstance(value, dict):
        for key, child in value.items():
            found = _first_scalar_path(child, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found = _first_scalar_path(child, (*path, index))
            if found is not None:
                return found
    elif isinstance(value, str | int | float | bool):
        return path
    return None


def _wrong_type(obj: Obj) -> tuple[Obj, tuple[Any, ...]]:
    """Replace the first scalar of the spec (or data, or metadata) with a mapping: no scalar field accepts one."""
    broken = copy.deepcopy(obj)
    for key in ("spec", "data", "metadata"):
        if isinstance(broken.get(key), dict):
            path = _first_scalar_path(broken[key], (key,))
            if path is not None:
                break
    else:
        raise AssertionError(f"{obj['kind']}: no scalar to break")
    parent: Any = broken
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = {"wrong": ["type"]}
    return broken, path


def test_every_kind_is_covered(rendered: dict[str, list[Obj]]) -> None:
    """The kinds the overlays render: core, autoscaling, policy, networking and the four Istio kinds."""
    assert set(_one_of_each_kind(rendered)) == {
        "Namespace", "ServiceAccount", "ConfigMap", "Secret", "Job", "Deployment", "Service",
        "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
        "DestinationRule", "VirtualService", "PeerAuthentication", "AuthorizationPolicy",
    }  # fmt: skip


def _refused(obj: Obj) -> bool:
    try:
        validate(obj)
    except INVALID:
        return True
    return False


def test_a_misspelt_field_fails_for_every_kind(rendered: dict[str, list[Obj]]) -> None:
    """For each kind: the object as rendered passes; the same with one field name misspelt fails."""
    passed = []
    for kind, obj in _one_of_each_kind(rendered).items():
        validate(obj)
        if not _refused(_misspell(obj)):
            passed.append(kind)
    assert passed == [], f"a misspelt field name passed validation for {passed}"


def test_a_wrong_type_fails_for_every_kind(rendered: dict[str, list[Obj]]) -> None:
    """For each kind: one scalar field given a mapping instead fails validation."""
    passed = []
    for kind, obj in _one_of_each_kind(rendered).items():
        broken, path = _wrong_type(obj)
        if not _refused(broken):
            passed.append(f"{kind} at {'.'.join(map(str, path))}")
    assert passed == [], f"a mapping in place of a scalar passed validation for {passed}"


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("DestinationRule", ("spec", "trafficPolicy", "outlierDetection", "maxEjectionPercent"), "forty"),
        ("DestinationRule", ("spec", "trafficPolicy", "connectionPool", "http", "h2UpgradePolicy"), "UPGRAED"),
        ("DestinationRule", ("spec", "trafficPolicy", "loadBalancer", "simple"), "LEAST_REQUESTS"),
        ("VirtualService", ("spec", "http", 0, "retries", "attempts"), "two"),
        ("PeerAuthentication", ("spec", "mtls", "mode"), "STRICTLY"),
        ("AuthorizationPolicy", ("spec", "action"), "CUSTOMISE"),
        ("Deployment", ("spec", "replicas"), "five"),
        ("Service", ("spec", "ports", 0, "port"), "eighty"),
        ("HorizontalPodAutoscaler", ("spec", "minReplicas"), [5]),
    ],
)
def test_field_level_mistakes_fail(
    rendered: dict[str, list[Obj]], kind: str, path: tuple[Any, ...], value: Any
) -> None:
    """Mistakes a person makes by hand - a bad enum value, a number as a word - are refused."""
    broken = copy.deepcopy(_one_of_each_kind(rendered)[kind])
    parent: Any = broken
    for step in path[:-1]:
        parent = parent[step]
    assert path[-1] in parent if isinstance(parent, dict) else True
    parent[path[-1]] = value
    with pytest.raises(INVALID):
        validate(broken)


def test_an_unknown_kind_is_an_error_not_a_pass() -> None:
    """A kind neither validator has a schema for is refused (kubernetes-validate alone would skip it)."""
    with pytest.raises(LookupError):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    with pytest.raises(LookupError):
        validate({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "s"}})
