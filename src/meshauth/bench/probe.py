"""One request of every kind before the harness measures: a run whose every answer is a refusal would
measure the wrong thing fast. Each probe must come back as the genuine allow (or, for the policy
service, a decision); anything else stops the harness with the reason (it could not measure)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
from envoy.service.auth.v3 import external_auth_pb2

from meshauth.bench import grpc_body, workload
from meshauth.bench.stack import Stack


def _status(url: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - loopback URL built here
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def grpc_check(grpc_url: str, message: bytes) -> int:
    """The ``google.rpc.Code`` of the gate's answer to a serialized CheckRequest."""
    target = grpc_url.removeprefix("http://")
    with grpc.insecure_channel(target) as channel:
        check = channel.unary_unary(
            grpc_body.CHECK_PATH,
            request_serializer=lambda b: b,
            response_deserializer=external_auth_pb2.CheckResponse.FromString,
        )
        response = check(message, timeout=10)
    return int(response.status.code)


def probe(stack: Stack) -> None:
    """RuntimeError naming the first probe that does not come back as expected."""
    auth = {"authorization": f"Bearer {stack.tokens[-1]}"}
    hot = workload.gate_path(0)
    for name, url in (("gate authn", stack.authn_url + hot), ("gate authz", stack.authz_url + hot)):
        status, _ = _status(url, auth)
        if status != 200:
            raise RuntimeError(f"{name} answered {status} to {url}, expected 200")
    distinct = stack.authz_url + "/ext_authz/R0/probe-not-in-store"
    status, _ = _status(distinct, auth)
    if status != 200:
        raise RuntimeError(f"gate authz answered {status} for a resource outside the store, expected 200")
    body = workload.single_lines(1)[0].split("\t")[2].encode()
    status, answer = _status(stack.policy_url + "/access/v1/evaluation", {"content-type": "application/json"}, body)
    if status != 200 or "decision" not in json.loads(answer):
        raise RuntimeError(f"policy service answered {status} {answer[:200]!r} to an evaluation")
    code = grpc_check(stack.grpc_url, grpc_body.check_request(auth["authorization"]))
    if code != 0:
        raise RuntimeError(f"gate gRPC Check answered code {code}, expected OK (0)")
