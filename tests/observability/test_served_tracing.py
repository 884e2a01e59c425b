"""One trace from the gate to the policy service, as served: both services run as ``meshauth serve``
(granian workers) with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a small OTLP/HTTP receiver in
this test (``otlp_collector``); the SDK's own exporter sends real OTLP protobuf over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc

from tests.auth.authz_processes import POLICIES, client_token, served_gate
from tests.client.served import DECISION_TOKEN
from tests.observability.otlp_collector import Collector, Received, collector
from tests.served import ADMIN, Served, call, serve

PARENT = "00f067aa0ba902b7"
# Two services started, an OAuth client made, four checks: ~40 s here, minutes on a loaded machine.
pytestmark = pytest.mark.timeout(300)


def new_trace() -> str:
    return uuid.uuid4().hex


@contextmanager
def policy_service(var: Path, valkey_url: str, **env: str) -> Iterator[Served]:
    var.mkdir(parents=True, exist_ok=True)
    with serve(
        "policy", "rsgi", var, valkey_url, MESHAUTH_DECISION_API_TOKENS=json.dumps([DECISION_TOKEN]), **env
    ) as pdp:
        body = json.dumps({"policies": POLICIES, "activate": True}).encode()
        headers = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
        status, raw = call("POST", pdp.url + "/admin/stores/default/policies", body=body, headers=headers)
        assert status == 201, raw
        yield pdp


def http_check(gate: Served, token: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(
        gate.url + "/ext_authz" + path, headers={"authorization": f"Bearer {token}", **headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items())


def grpc_check(gate: Served, token: str, path: str, headers: dict[str, str]) -> int:
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method="GET", path=path, headers={"authorization": f"Bearer {token}", **headers}
    )
    request = external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )
    with grpc.insecure_channel(f"127.0.0.1:{gate.grpc_port}") as channel:
        response = external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=10)
    return int(response.status.code)


def chain(spans: list[Received], trace_id: str) -> dict[str, Received]:
    """The four spans of one check, by role, if all have arrived."""
    mine = [s for s in spans if s.trace_id == trace_id]
    roles = {
        "gate": [s for s in mine if s.service == "meshauth-auth" and s.kind == "SERVER"],
        "call": [s for s in mine if s.service == "meshauth-auth" and s.kind == "CLIENT"],
        "policy": [s for s in mine if s.service == "meshauth-policy" and s.kind == "SERVER"],
        "evaluate": [s for s in mine if s.name == "policy.evaluate"],
    }
    return {role: found[0] for role, found in roles.items() if len(found) == 1}


def ext_authz_spans(spans: list[Received]) -> list[Received]:
    return [s for s in spans if s.service == "meshauth-auth" and s.name == "GET /ext_authz"]


def assert_one_trace(c: Collector, trace_id: str, incoming_parent: str | None) -> dict[str, Received]:
    spans = c.wait_for(lambda got: len(chain(got, trace_id)) == 4)
    roles = chain(spans, trace_id)
    assert roles["gate"].parent_span_id == (incoming_parent or "")
    assert roles["call"].parent_span_id == roles["gate"].span_id
    assert roles["policy"].parent_span_id == roles["call"].span_id
    assert roles["evaluate"].parent_span_id == roles["policy"].span_id
    assert roles["evaluate"].service == "meshauth-policy"
    return roles


def test_a_check_is_one_trace_from_the_gate_to_the_policy_service(tmp_path: Path, valkey_url: str) -> None:
    """ext_authz over HTTP and gRPC and ``/v1/authorize``: the gate's SERVER span continues the
    caller's trace, its policy call is a CLIENT span under it, and the policy service's SERVER and
    evaluation spans continue that — one trace id across both services' exports."""
    with collector() as c:
        otel_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": c.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        with (
            policy_service(tmp_path / "pdp", valkey_url, **otel_env) as pdp,
            # A generous check deadline: on a loaded machine a first policy call must not turn into a 503.
            served_gate(
                tmp_path / "gate", valkey_url, pdp.url, MESHAUTH_POLICY_CHECK_DEADLINE="10", **otel_env
            ) as gate,
        ):
            token = client_token(gate)
            over_http, over_grpc, authorize = new_trace(), new_trace(), new_trace()
            doc = uuid.uuid4().hex  # distinct resources: no cached decision answers for the service

            status, headers = http_check(
                gate, token, f"/documents/h{doc}", {"traceparent": f"00-{over_http}-{PARENT}-01", "x-request-id": "r-1"}
            )
            assert status == 200 and headers["x-request-id"] == "r-1"

            assert grpc_check(gate, token, f"/documents/g{doc}", {"traceparent": f"00-{over_grpc}-{PARENT}-01"}) == 0

            body = json.dumps({"action": "read", "resource": {"type": "Document", "id": f"a{doc}"}}).encode()
            status, raw = call(
                "POST",
                gate.url + "/v1/authorize",
                body=body,
                headers={
                    "authorization": f"Bearer {token}",
                    "content-type": "application/json",
                    "traceparent": f"00-{authorize}-{PARENT}-01",
                },
            )
            assert status == 200 and json.loads(raw)["decision"] is True

            hostile = f"00-{over_http.upper()}-{PARENT}-01"
            status, headers = http_check(gate, token, f"/documents/x{doc}", {"traceparent": hostile})
            assert status == 200 and hostile not in json.dumps(headers)

            assert assert_one_trace(c, over_http, PARENT)["gate"].name == "GET /ext_authz"
            assert assert_one_trace(c, over_grpc, PARENT)["gate"].name == "Check"
            assert assert_one_trace(c, authorize, PARENT)["gate"].name == "POST /v1/authorize"
            # The invalid traceparent started a new trace: its gate span is a root of another trace.
            spans = c.wait_for(lambda got: len(ext_authz_spans(got)) == 2)
            (fresh,) = [s for s in ext_authz_spans(spans) if s.trace_id != over_http]
            assert fresh.parent_span_id == "" and fresh.trace_id != over_http.upper()
            assert "Traceback" not in gate.log() + pdp.log()
