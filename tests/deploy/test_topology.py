"""What the rendered manifests promise: the Phase 1 topology, probes, protocol-named ports, circuit
breaking sized for the replica counts, bounded retries and an explicit ext_authz timeout."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
import yaml

from meshauth.auth.extauthz_http import PREFIX as EXT_AUTHZ_PREFIX
from meshauth.routes import OVERRIDE_HEADERS
from tests.deploy.manifests import REPO, Obj

PHASE1 = {"auth": 5, "policy": 3, "bus-worker": 2}
MESH_CONFIG = REPO / "deploy" / "istio" / "mesh-config.yaml"
NAMESPACE = "meshauth"


def _of(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _pod(deployment: Obj) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert match, f"not a duration: {duration}"
    return float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


def _service_for_host(objects: list[Obj], host: str) -> Obj:
    name, namespace, *_ = host.split(".")
    services = {(o["metadata"]["name"], o["metadata"].get("namespace")): o for o in objects if o["kind"] == "Service"}
    assert host.endswith(".svc.cluster.local"), host
    assert (name, namespace) in services, f"{host} names no rendered Service"
    return services[(name, namespace)]


def _deployment_behind(objects: list[Obj], service: Obj) -> Obj:
    selector = service["spec"]["selector"]
    matches = [
        d
        for d in _of(objects, "Deployment").values()
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)} Deployments"
    return matches[0]


def test_production_is_the_phase1_topology(production: list[Obj]) -> None:
    """5 auth, 3 policy and 2 bus-worker replicas, and the autoscalers never go below that."""
    deployments = _of(production, "Deployment")
    assert {name: d["spec"]["replicas"] for name, d in deployments.items()} == PHASE1
    hpas = _of(production, "HorizontalPodAutoscaler")
    assert {name: h["spec"]["minReplicas"] for name, h in hpas.items()} == PHASE1
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert hpa["spec"]["maxReplicas"] >= 2 * PHASE1[name]


def test_dev_runs_one_of_each(rendered: dict[str, list[Obj]]) -> None:
    """The dev overlay: one replica of each Deployment."""
    assert {n: d["spec"]["replicas"] for n, d in _of(rendered["dev"], "Deployment").items()} == dict.fromkeys(PHASE1, 1)


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_every_workload_has_a_budget_an_autoscaler_and_spreads(overlay: str, rendered: dict[str, list[Obj]]) -> None:
    """Each Deployment has a PodDisruptionBudget selecting its pods, an HPA, and spreads across nodes."""
    objects = rendered[overlay]
    pdbs = _of(objects, "PodDisruptionBudget")
    for name, deployment in _of(objects, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pdbs[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdbs[name]["spec"]["maxUnavailable"] == 1
        assert name in _of(objects, "HorizontalPodAutoscaler")
        spread = _pod(deployment)["topologySpreadConstraints"]
        by_node = [c for c in spread if c["topologyKey"] == "kubernetes.io/hostname"]
        assert by_node and by_node[0]["labelSelector"]["matchLabels"].items() <= labels.items()
        if overlay == "production" and name in ("auth", "policy"):
            assert by_node[0]["whenUnsatisfiable"] == "DoNotSchedule"


def test_probes(production: list[Obj]) -> None:
    """Both services: startup and liveness /healthz (asks nothing: a database outage must not restart
    every replica), readiness /readyz (dependencies)."""
    auth = _pod(_of(production, "Deployment")["auth"])["containers"][0]
    assert auth["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-api"}
    assert auth["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-api"}
    policy = _pod(_of(production, "Deployment")["policy"])["containers"][0]
    assert policy["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-authzen"}
    assert policy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-authzen"}
    assert policy["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http-authzen"}
    for container in (auth, policy):
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_service_ports_are_named_for_istio_protocol_detection(production: list[Obj]) -> None:
    """Every Service port is named http-* or grpc-* with its appProtocol and targets a named container port."""
    for service in _of(production, "Service").values():
        deployment = _deployment_behind(production, service)
        container_ports = {p["name"]: p["containerPort"] for c in _pod(deployment)["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            protocol = port["name"].split("-", 1)[0]
            assert protocol in ("http", "grpc") and "-" in port["name"], port["name"]
            assert port["appProtocol"] == protocol
            assert container_ports[port["targetPort"]] == port["port"]
    ports = {p["name"]: p["port"] for p in _of(production, "Service")["auth"]["spec"]["ports"]}
    assert ports == {"http-api": 8080, "grpc-extauthz": 9001}
    assert [p["name"] for p in _of(production, "Service")["policy"]["spec"]["ports"]] == ["http-authzen"]


def test_destination_rules_pool_upgrade_balance_and_eject(production: list[Obj]) -> None:
    """Each DestinationRule upgrades to HTTP/2, balances by least requests, bounds its pools and
    ejects outliers; each names a rendered Service."""
    rules = _of(production, "DestinationRule")
    assert set(rules) == {"auth", "policy"}
    for rule in rules.values():
        _service_for_host(production, rule["spec"]["host"])
        policy = rule["spec"]["trafficPolicy"]
        assert policy["loadBalancer"] == {"simple": "LEAST_REQUEST"}
        http = policy["connectionPool"]["http"]
        assert http["h2UpgradePolicy"] == "UPGRADE"
        assert http["http2MaxRequests"] > 0 and http["maxRequestsPerConnection"] > 0
        # Below the app's keep-alive timeout (MESHAUTH_HTTP_HEADER_READ_TIMEOUT=20 in the ConfigMap).
        assert _seconds(http["idleTimeout"]) < 20
        outliers = policy["outlierDetection"]
        assert outliers["consecutive5xxErrors"] > 0
        assert _seconds(outliers["interval"]) > 0 and _seconds(outliers["baseEjectionTime"]) > 0


def test_max_ejection_percent_suits_the_replica_counts(production: list[Obj]) -> None:
    """Envoy ejects while (ejected + 1) / hosts <= maxEjectionPercent: at least one replica can be
    ejected, and a majority always serves - at the Phase 1 counts and at every autoscaled count."""
    hpas = _of(production, "HorizontalPodAutoscaler")
    ejectable = {}
    for rule in _of(production, "DestinationRule").values():
        deployment = _deployment_behind(production, _service_for_host(production, rule["spec"]["host"]))
        name = deployment["metadata"]["name"]
        percent = rule["spec"]["trafficPolicy"]["outlierDetection"]["maxEjectionPercent"]
        for hosts in range(hpas[name]["spec"]["minReplicas"], hpas[name]["spec"]["maxReplicas"] + 1):
            ejected = math.floor(hosts * percent / 100)
            assert ejected >= 1, f"{name}: {percent}% of {hosts} ejects no replica"
            assert hosts - ejected > hosts / 2, f"{name}: {percent}% of {hosts} may eject {ejected}"
        ejectable[name] = math.floor(deployment["spec"]["replicas"] * percent / 100)
    assert ejectable == {"auth": 2, "policy": 1}


def test_virtual_services_time_out_and_retry_a_bounded_number_of_times(production: list[Obj]) -> None:
    """Every route has a timeout and at most one retry within it; writes are retried only when the request
    never reached the app."""
    services = _of(production, "VirtualService")
    assert set(services) == {"auth", "policy"}
    for vs in services.values():
        for host in vs["spec"]["hosts"]:
            _service_for_host(production, host)
        for route in vs["spec"]["http"]:
            timeout, retries = _seconds(route["timeout"]), route["retries"]
            assert 0 < timeout <= 120
            assert 1 <= retries["attempts"] <= 2
            assert _seconds(retries["perTryTimeout"]) <= timeout
            assert retries["retryOn"]
            for destination in route["route"]:
                _service_for_host(production, destination["destination"]["host"])
    writes = [services["auth"]["spec"]["http"][0], services["policy"]["spec"]["http"][-1]]
    for route in writes:
        assert set(route["retries"]["retryOn"].split(",")) <= {"connect-failure", "refused-stream"}, route["name"]


def test_mtls_is_strict(production: list[Obj]) -> None:
    """A namespace-wide PeerAuthentication in meshauth requires mutual TLS."""
    (peer,) = _of(production, "PeerAuthentication").values()
    assert peer["metadata"]["namespace"] == NAMESPACE and "selector" not in peer["spec"]
    assert peer["spec"]["mtls"]["mode"] == "STRICT"


def test_ext_authz_policy_and_providers_agree(production: list[Obj]) -> None:
    """The CUSTOM AuthorizationPolicy (root namespace) names a provider of deploy/istio/mesh-config.yaml;
    both providers reach the auth Service on its ports, with an explicit sub-second timeout, failing closed."""
    (policy,) = [p for p in _of(production, "AuthorizationPolicy").values() if p["spec"].get("action") == "CUSTOM"]
    assert policy["metadata"]["namespace"] == "istio-system"
    assert policy["spec"]["action"] == "CUSTOM" and policy["spec"]["rules"]
    providers = {
        p["name"]: p for p in yaml.safe_load(MESH_CONFIG.read_text())["spec"]["meshConfig"]["extensionProviders"]
    }
    assert policy["spec"]["provider"]["name"] in providers
    grpc, http = (
        providers["meshauth-ext-authz-grpc"]["envoyExtAuthzGrpc"],
        providers["meshauth-ext-authz-http"]["envoyExtAuthzHttp"],
    )
    ports = {p["name"]: p["port"] for p in _service_for_host(production, grpc["service"])["spec"]["ports"]}
    assert grpc["port"] == ports["grpc-extauthz"]
    assert _service_for_host(production, http["service"]) is not None and http["port"] == ports["http-api"]
    assert http["pathPrefix"] == EXT_AUTHZ_PREFIX
    for provider in (grpc, http):
        assert "timeout" in provider and 0 < _seconds(provider["timeout"]) <= 1  # Istio's default: 600 s
        assert provider["failOpen"] is False
    assert "authorization" in http["includeRequestHeadersInCheck"]
    # The gate refuses override headers in either spelling (routes.is_override): over HTTP it sees only these.
    overrides = OVERRIDE_HEADERS | {name.replace("-", "_") for name in OVERRIDE_HEADERS}
    assert overrides <= set(http["includeRequestHeadersInCheck"])
    assert {"x-meshauth-subject", "x-meshauth-client-id", "x-meshauth-scope"} <= set(http["headersToUpstreamOnAllow"])


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_everything_lives_in_the_meshauth_namespace(overlay: str, rendered: dict[str, list[Obj]]) -> None:
    """Namespaced objects are in meshauth, except the mesh-wide ext_authz (CUSTOM) policy in Istio's root
    namespace."""
    for obj in rendered[overlay]:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE and obj["metadata"]["labels"]["istio-injection"] == "enabled"
            continue
        custom = obj["kind"] == "AuthorizationPolicy" and obj["spec"].get("action") == "CUSTOM"
        expected = "istio-system" if custom else NAMESPACE
        assert obj["metadata"].get("namespace") == expected, f"{obj['kind']} {obj['metadata']['name']}"


@pytest.mark.parametrize("workload", ["auth", "policy"])
def test_admin_api_is_refused_to_callers_outside_the_meshauth_namespace(workload: str, production: list[Obj]) -> None:
    """/admin/ on either service is refused by its sidecar unless the caller's verified identity is in
    the meshauth namespace: the ingress gateway (istio-system) and every other meshed workload are
    reachable by NetworkPolicy, so without this the admin token alone guards the admin API from them.
    (kubectl port-forward reaches the app without passing the sidecar's inbound listener.)"""
    policies = [
        p
        for p in _of(production, "AuthorizationPolicy").values()
        if p["metadata"].get("namespace") == NAMESPACE
        and p["spec"].get("selector", {}).get("matchLabels") == {"app.kubernetes.io/name": workload}
        and p["spec"].get("action") == "DENY"
    ]
    assert policies, f"no DENY AuthorizationPolicy guards {workload}'s admin API"
    rules = [rule for policy in policies for rule in policy["spec"]["rules"]]
    for path in ("/admin", "/admin/*"):
        assert any(
            path in operation["operation"].get("paths", [])
            and {"notNamespaces": [NAMESPACE]} in [source["source"] for source in rule.get("from", [])]
            for rule in rules
            for operation in rule.get("to", [])
        ), f"{workload}: {path} is not denied to callers outside {NAMESPACE}"


@pytest.mark.parametrize("workload", ["auth", "policy"])
def test_sidecar_outlives_the_app_drain(workload: str, production: list[Obj]) -> None:
    """On SIGTERM Istio's sidecar drains for terminationDrainDuration (default 5 s) and exits, while the
    app keeps serving through its preStop sleep and then drains up to granian's workers_kill_timeout:
    requests still in flight after 5 s would lose their inbound path and their outbound calls. The
    sidecar must stay until the app is done (and leave early once idle), within the pod's grace."""
    from meshauth.granian_server import WORKERS_KILL_TIMEOUT

    template = _of(production, "Deployment")[workload]["spec"]["template"]
    pod = template["spec"]
    proxy = json.loads(template["metadata"]["annotations"]["proxy.istio.io/config"])
    (container,) = [c for c in pod["containers"] if c["name"] == workload]
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = _seconds(proxy.get("terminationDrainDuration", "5s"))
    assert pre_stop + WORKERS_KILL_TIMEOUT <= drain <= pod["terminationGracePeriodSeconds"]
    assert proxy.get("proxyMetadata", {}).get("EXIT_ON_ZERO_ACTIVE_CONNECTIONS") == "true"
    assert proxy.get("holdApplicationUntilProxyStarts") is True
