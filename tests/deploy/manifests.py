"""Rendering the Kustomize overlays and validating what they hold: Kubernetes kinds with
kubernetes-validate (strict, 1.30), Istio kinds against the CRD schemas in deploy/schemas/istio."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from pydantic import AliasChoices

from meshauth.config import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
KUBERNETES_VERSION = "1.30"
ISTIO_SCHEMAS = REPO / "deploy" / "schemas" / "istio"

Obj = dict[str, Any]
# Settings another change adds (the gate's authz mode, issue 10): allowed before it lands.
PENDING_SETTINGS = {"MESHAUTH_ROUTES_FILE", "MESHAUTH_POLICY_URLS"}


class NoKubectl(RuntimeError):
    """kubectl (with its built-in Kustomize) is not on PATH."""


def kustomize(path: Path) -> list[Obj]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise NoKubectl("kubectl is not installed: the manifests cannot be rendered here (CI has it)")
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def istio_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> the strict JSON schema of that Istio resource."""
    schemas: dict[tuple[str, str], Obj] = {}
    for path in sorted(ISTIO_SCHEMAS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            root = strict(version["schema"]["openAPIV3Schema"])
            root["properties"] = {
                "apiVersion": {"type": "string", "enum": [f"{group}/{version['name']}"]},
                "kind": {"type": "string", "enum": [kind]},
                "metadata": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "namespace": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                    "additionalProperties": False,
                },
                **root["properties"],
            }
            root["required"] = sorted({"apiVersion", "kind", "metadata", *root.get("required", [])})
            schemas[(f"{group}/{version['name']}", kind)] = root
    return schemas


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 structural schema that refuses unknown fields.

    The API server prunes fields a structural schema does not declare, silently; a typo in a field
    name would then vanish from the applied object. Here every object with declared properties (and
    no ``x-kubernetes-preserve-unknown-fields``) gets ``additionalProperties: false``.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def is_istio(obj: Obj) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0].endswith("istio.io")


def validate(obj: Obj) -> None:
    """Raise if ``obj`` is not valid: jsonschema's or kubernetes-validate's ValidationError, or
    LookupError for a kind neither validator knows (nothing passes unvalidated)."""
    if is_istio(obj):
        schema = istio_schemas().get((obj.get("apiVersion", ""), obj.get("kind", "")))
        if schema is None:
            raise LookupError(f"no Istio schema for {obj.get('apiVersion')} {obj.get('kind')} in {ISTIO_SCHEMAS}")
        jsonschema.Draft7Validator(schema).validate(obj)
        return
    try:
        kubernetes_validate.validate(copy.deepcopy(obj), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise LookupError(str(exc)) from None


def setting_names() -> set[str]:
    """Every environment variable meshauth.config.Settings reads."""
    names = {"MESHAUTH_CONFIG_FILE"}
    for name, field in Settings.model_fields.items():
        names.add(f"MESHAUTH_{name.upper()}")
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice) for choice in field.validation_alias.choices if str(choice).isupper())
    return names
