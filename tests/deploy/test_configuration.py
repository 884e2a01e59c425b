"""The manifests configure meshauth as it really is: every environment variable is a setting, the
values load, the commands exist, secrets come from one Secret, migrations run before serving, pods
run unprivileged as the image's user, and the network is closed but for the mesh paths."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from meshauth.cli import app as cli
from meshauth.config import Settings
from meshauth.config_load import load_settings
from tests.deploy.dockerfile import parse
from tests.deploy.manifests import K8S, PENDING_SETTINGS, REPO, Obj, kustomize, setting_names, validate

SECRET_KEYS = {"admin-token", "database-url", "redis-url", "key-encryption-key"}
# What production's existing Secret would hold, for loading the settings in the test.
EXAMPLE_SECRETS = {
    "admin-token": "prod-admin-token-0123456789abcdef",
    "database-url": "postgresql://meshauth:pw@db.example.internal:5432/meshauth",
    "redis-url": "rediss://default:pw@redis.example.internal:6380/0",
    "key-encryption-key": "kek-0123456789abcdef",
}


def _containers(obj: Obj) -> Iterator[tuple[str, dict[str, Any]]]:
    pod = obj["spec"]["template"]["spec"]
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        yield f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}", container


def _workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in ("Deployment", "Job")]


def _environment(objects: list[Obj], container: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            if ref["key"] in secrets:
                env[var["name"]] = secrets[ref["key"]]
            else:
                assert ref.get("optional") is True, f"{var['name']}: secret key {ref['key']} missing"
    return env


def _dev_secrets(objects: list[Obj]) -> dict[str, str]:
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_every_environment_variable_is_a_setting(overlay: str, rendered: dict[str, list[Obj]]) -> None:
    """Every variable a container gets (env and envFrom ConfigMaps) is a field of meshauth.config.Settings."""
    known = setting_names() | PENDING_SETTINGS
    objects = rendered[overlay]
    for where, container in (c for w in _workloads(objects) for c in _containers(w)):
        names = set(_environment(objects, container, dict.fromkeys(SECRET_KEYS, "x")))
        assert names, where
        assert names <= known, f"{where}: not settings: {sorted(names - known)}"


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_every_container_environment_loads(
    overlay: str, rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values are valid too: meshauth's settings load from each container's environment."""
    objects = rendered[overlay]
    secrets = _dev_secrets(objects) if overlay == "dev" else EXAMPLE_SECRETS
    for where, settings in _load_every_container(objects, secrets, monkeypatch):
        assert settings.auth_host == "0.0.0.0" and settings.policy_host == "0.0.0.0", where
        assert settings.database_url == secrets["database-url"], where


def _load_every_container(
    objects: list[Obj], secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Settings]]:
    for where, container in (c for w in _workloads(objects) for c in _containers(w)):
        for name in list(os.environ):
            if name.startswith("MESHAUTH_") or name in ("REDIS_URL", "DATABASE_URL"):
                monkeypatch.delenv(name)
        env = _environment(objects, container, secrets)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield where, load_settings()


SENTINEL_URL = "redis+sentinel://:pw@sentinel-0:26379,sentinel-1:26379,sentinel-2:26379/mymaster"
CLUSTER_URL = "redis+cluster://:pw@node-0:6379,node-1:6379,node-2:6379"


def test_production_takes_a_sentinel_url_as_it_is(production: list[Obj], monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-url may name Sentinels: every container loads it, with the ordinary prefix."""
    secrets = {**EXAMPLE_SECRETS, "redis-url": SENTINEL_URL}
    loaded = list(_load_every_container(production, secrets, monkeypatch))
    with_redis = [where for where, settings in loaded if settings.redis_url == SENTINEL_URL]
    assert len(with_redis) >= 3  # auth, policy, bus-worker (migrations need no Redis)
    assert {settings.redis_prefix for _, settings in loaded} == {"meshauth:"}


def test_a_cluster_url_loads_with_and_without_the_redis_cluster_component(
    production: list[Obj], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """production alone with a redis+cluster:// URL: every container loads it with the hash-tagged
    prefix (the default for a Cluster URL); with components/redis-cluster (which sets that prefix
    explicitly) the same, and the rest of the objects still validate."""
    secrets = {**EXAMPLE_SECRETS, "redis-url": CLUSTER_URL}
    alone = list(_load_every_container(production, secrets, monkeypatch))
    with_redis = [settings for _, settings in alone if settings.redis_url == CLUSTER_URL]
    assert len(with_redis) >= 3  # auth, policy, bus-worker (migrations need no Redis)
    assert {settings.redis_prefix for settings in with_redis} == {"{meshauth}:"}
    relative = Path(os.path.relpath(K8S, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {relative}/overlays/production\ncomponents:\n  - {relative}/components/redis-cluster\n"
    )
    objects = kustomize(tmp_path)
    for obj in objects:
        validate(obj)
    loaded = list(_load_every_container(objects, secrets, monkeypatch))
    assert len(loaded) == len(list(_load_every_container(production, EXAMPLE_SECRETS, monkeypatch)))
    assert len([where for where, settings in loaded if settings.redis_url == CLUSTER_URL]) >= 3
    assert {settings.redis_prefix for _, settings in loaded} == {"{meshauth}:"}


def test_production_creates_no_secret_and_reads_one(production: list[Obj]) -> None:
    """Production expects an existing Secret (nothing secret in git); every reference names it, by known keys."""
    assert not [o for o in production if o["kind"] == "Secret"]
    refs = {
        (v["valueFrom"]["secretKeyRef"]["name"], v["valueFrom"]["secretKeyRef"]["key"])
        for w in _workloads(production)
        for _, c in _containers(w)
        for v in c.get("env", [])
        if "valueFrom" in v
    }
    assert {name for name, _ in refs} == {"meshauth-secrets"}
    assert {key for _, key in refs} == SECRET_KEYS


def test_dev_generates_the_secret_it_references(rendered: dict[str, list[Obj]]) -> None:
    """The dev overlay's generated Secret (hash-suffixed) is the one its pods reference, with every required key."""
    dev = rendered["dev"]
    (secret,) = [o for o in dev if o["kind"] == "Secret"]
    assert secret["metadata"]["name"].startswith("meshauth-secrets-")
    for w in _workloads(dev):
        for _, c in _containers(w):
            for v in c.get("env", []):
                if "valueFrom" in v:
                    assert v["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert {"admin-token", "database-url", "redis-url"} <= set(secret["data"])


def _cli_exists(args: list[str]) -> tuple[int, str]:
    """``meshauth <args> --help``: its exit status and output. In this process, through the typer app the
    image's ``meshauth`` entry point runs: a new interpreter per command took ~2 s quiet, and these two
    tests 54 s each at load 20."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MESHAUTH_")}
    result = CliRunner().invoke(cli, [*args, "--help"], env=unset)
    return result.exit_code, result.output


def test_service_and_migration_commands_exist(production: list[Obj]) -> None:
    """The image's ENTRYPOINT plus each auth, policy and migration container's args is a real meshauth command."""
    _args, stages = parse(REPO / "Dockerfile")
    assert stages[-1].all("ENTRYPOINT")[-1] == '["meshauth"]'
    commands = {
        tuple(c["args"])
        for w in _workloads(production)
        if w["metadata"]["name"] != "bus-worker"
        for _, c in _containers(w)
    }
    assert commands == {("db", "upgrade"), ("serve", "auth", "--no-migrate"), ("serve", "policy", "--no-migrate")}
    for args in commands:
        status, output = _cli_exists(list(args))
        assert status == 0, f"meshauth {' '.join(args)}: {output}"


def test_bus_worker_commands_exist(production: list[Obj]) -> None:
    """The bus-worker containers run `meshauth worker audit` and `meshauth worker analytics` (issue 12)."""
    bus_worker = next(w for w in _workloads(production) if w["metadata"]["name"] == "bus-worker")
    commands = [c["args"] for _, c in _containers(bus_worker)]
    assert commands == [["worker", "audit"], ["worker", "analytics"]]
    if _cli_exists(["worker"])[0] != 0:
        pytest.skip("`meshauth worker` (issue 12, the bus) is not in this build yet: the bus-worker pods need it")
    for args in commands:
        assert _cli_exists(args)[0] == 0, args


def test_migrations_run_before_any_pod_serves(production: list[Obj]) -> None:
    """The Job runs `db upgrade` without a sidecar (it could never complete with one); every auth and policy
    pod runs the same command as an init container (it waits on the Job's lock, or migrates), with database
    traffic kept out of the not-yet-started sidecar."""
    (job,) = [o for o in production if o["kind"] == "Job"]
    assert job["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    for name in ("auth", "policy"):
        (deployment,) = [o for o in production if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
        init = deployment["spec"]["template"]["spec"]["initContainers"]
        assert [c["args"] for c in init] == [["db", "upgrade"]]
        assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--no-migrate"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert "5432" in annotations["traffic.sidecar.istio.io/excludeOutboundPorts"].split(",")


def test_pods_run_unprivileged_as_the_image_user(production: list[Obj]) -> None:
    """Every pod runs as non-root with the Dockerfile's uid, read-only root filesystem, no capabilities."""
    _args, stages = parse(REPO / "Dockerfile")
    uid = int(stages[-1].all("USER")[-1].split(":")[0])
    images = set()
    for w in _workloads(production):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid
        assert pod["automountServiceAccountToken"] is False
        for where, c in _containers(w):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            images.add(c["image"])
    assert images == {"registry.example.com/meshauth:0.1.0"}


def _allowed_ports(policies: list[Obj], labels: dict[str, str]) -> set[int]:
    ports: set[int] = set()
    for np in policies:
        selector = np["spec"]["podSelector"]
        match = selector.get("matchLabels", {}).items() <= labels.items() and all(
            labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", [])
        )
        if match:
            for rule in np["spec"].get("ingress", []):
                ports.update(p["port"] for p in rule.get("ports", []))
    return ports


def test_network_is_closed_but_for_the_mesh_paths(production: list[Obj]) -> None:
    """A default deny both ways; auth is reachable on its two ports, policy on 8090, the bus workers on
    metrics ports only (their own too); egress is DNS, istiod and the datastores' ports."""
    policies = [o for o in production if o["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] and "egress" not in p["spec"]
    ]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    metrics = {15020, 15090, 8080, 8090}
    assert _allowed_ports(policies, {"app.kubernetes.io/name": "auth"}) == {8080, 9001} | metrics
    assert _allowed_ports(policies, {"app.kubernetes.io/name": "policy"}) == {8090} | metrics
    # The bus workers serve their own /metrics (meshauth worker audit :9102, analytics :9103).
    assert _allowed_ports(policies, {"app.kubernetes.io/name": "bus-worker"}) == metrics | {9102, 9103}
    egress_ports = {
        p["port"]
        for np in policies
        if np["spec"]["podSelector"] == {}
        for r in np["spec"].get("egress", [])
        for p in r["ports"]
    }
    assert egress_ports == {53, 15012, 5432, 6379, 6380, 26379}  # 26379: Redis Sentinel
