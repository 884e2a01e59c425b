"""Authz mode: a request carrying a method or URL override header is refused (403
``request_override``), over HTTP and gRPC — the gate would authorize the request line while an
upstream that honours the header (Rails, Express method-override, Symfony, IIS) serves another."""

from __future__ import annotations

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2

from meshauth.routes import OVERRIDE_HEADERS
from tests.auth.conftest import Harness
from tests.auth.test_authz import authz, grpc_check, policy_url, reason  # noqa: F401 - fixtures

OVERRIDES = [
    ("X-HTTP-Method-Override", "DELETE"),
    ("x-http-method", "DELETE"),
    ("X-Method-Override", "DELETE"),
    ("X-Original-URL", "/documents/secret"),
    ("X-Rewrite-URL", "/documents/secret"),
]


def test_every_listed_header_is_tested() -> None:
    assert {name.lower() for name, _ in OVERRIDES} == OVERRIDE_HEADERS


@pytest.mark.parametrize(("name", "value"), OVERRIDES)
async def test_http_override_headers_are_refused(authz: Harness, name: str, value: str) -> None:  # noqa: F811
    token = (await authz.token(scope="read"))["access_token"]
    auth = {"authorization": f"Bearer {token}"}
    r = await authz.http.get("/ext_authz/documents/d1", headers=auth)
    assert r.status_code == 200  # the same request without the header is allowed
    r = await authz.http.get("/ext_authz/documents/d1", headers={**auth, name: value})
    assert (r.status_code, reason(r)) == (403, "request_override")
    # Whatever the route: an override on an unrouted path could name a routed one.
    r = await authz.http.get("/ext_authz/orders/1", headers={**auth, name: value})
    assert (r.status_code, reason(r)) == (403, "request_override")
    # Authentication still comes first.
    r = await authz.http.get("/ext_authz/documents/d1", headers={name: value})
    assert r.status_code == 401


async def test_grpc_override_headers_are_refused(authz: Harness) -> None:  # noqa: F811
    token = (await authz.token(scope="read"))["access_token"]
    auth = {"authorization": f"Bearer {token}"}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{authz.app.grpc_bound}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        ok = await stub.Check(grpc_check("GET", "/documents/d1", auth))
        assert ok.status.code == code_pb2.OK
        for name, value in OVERRIDES:
            no = await stub.Check(grpc_check("GET", "/documents/d1", {**auth, name.lower(): value}))
            assert no.status.code == code_pb2.PERMISSION_DENIED, name
            assert {o.header.key: o.header.value for o in no.denied_response.headers} == {
                "x-meshauth-reason": "request_override"
            }
        # Envoy's raw header form (encode_raw_headers): one entry per line, names as sent.
        raw = grpc_check("GET", "/documents/d1", {})
        lines = raw.attributes.request.http.header_map.headers
        lines.append(base_pb2.HeaderValue(key="authorization", raw_value=f"Bearer {token}".encode()))
        lines.append(base_pb2.HeaderValue(key="X-HTTP-Method-Override", raw_value=b"DELETE"))
        no = await stub.Check(raw)
        assert no.status.code == code_pb2.PERMISSION_DENIED


UNDERSCORED = ["X_HTTP_METHOD_OVERRIDE", "x-http_method-override", "X_Original_URL", "x_method_override"]


@pytest.mark.parametrize("name", UNDERSCORED)
async def test_underscore_spellings_of_override_headers_are_refused(authz: Harness, name: str) -> None:  # noqa: F811
    """CGI-style servers (Rack on Puma before 6.4.3, PHP, WSGI's environ) read ``X_HTTP_METHOD_OVERRIDE``
    as ``X-HTTP-Method-Override`` (both are ``HTTP_X_HTTP_METHOD_OVERRIDE``), and Envoy passes
    underscores by default: ``POST /documents/d1`` with it was authorized as a POST and served as a
    DELETE by Rack::MethodOverride. Over HTTP (when Envoy is told to forward the name) and gRPC."""
    token = (await authz.token(scope="read"))["access_token"]
    auth = {"authorization": f"Bearer {token}"}
    r = await authz.http.get("/ext_authz/documents/d1", headers={**auth, name: "DELETE"})
    assert (r.status_code, reason(r)) == (403, "request_override")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{authz.app.grpc_bound}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        no = await stub.Check(grpc_check("GET", "/documents/d1", {**auth, name.lower(): "DELETE"}))
        assert no.status.code == code_pb2.PERMISSION_DENIED
        raw = grpc_check("GET", "/documents/d1", {})
        lines = raw.attributes.request.http.header_map.headers
        lines.append(base_pb2.HeaderValue(key="authorization", raw_value=f"Bearer {token}".encode()))
        lines.append(base_pb2.HeaderValue(key=name, raw_value=b"DELETE"))
        no = await stub.Check(raw)
        assert no.status.code == code_pb2.PERMISSION_DENIED
    r = await authz.http.get("/ext_authz/documents/d1", headers={**auth, "x_request_id": "1"})
    assert r.status_code == 200  # other underscored names are not refused


@pytest.mark.parametrize("value", [b"\xff\xfeDELETE", b"", b"D" * 6000], ids=["not-utf8", "empty", "6000-bytes"])
async def test_hostile_override_values_are_refused_never_a_5xx(authz: Harness, value: bytes) -> None:  # noqa: F811
    """The header's presence is what is refused: a value that is not UTF-8, empty or large is the same
    403, over HTTP and in Envoy's raw gRPC header form, and the worker keeps answering."""
    token = (await authz.token(scope="read"))["access_token"]
    r = await authz.http.get(
        "/ext_authz/documents/d1",
        headers={b"authorization": f"Bearer {token}".encode(), b"X-HTTP-Method-Override": value},
    )
    assert (r.status_code, reason(r)) == (403, "request_override")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{authz.app.grpc_bound}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        raw = grpc_check("GET", "/documents/d1", {})
        lines = raw.attributes.request.http.header_map.headers
        lines.append(base_pb2.HeaderValue(key="authorization", raw_value=f"Bearer {token}".encode()))
        lines.append(base_pb2.HeaderValue(key="X-Original-URL", raw_value=value))
        no = await stub.Check(raw)
        assert no.status.code == code_pb2.PERMISSION_DENIED
        assert no.denied_response.status.code == 403
    ok = await authz.http.get("/ext_authz/documents/d1", headers={"authorization": f"Bearer {token}"})
    assert ok.status_code == 200


async def test_a_method_override_parameter_is_refused_over_http_and_grpc(authz: Harness) -> None:  # noqa: F811
    """``?_method=DELETE`` (Express methodOverride, Symfony): served as a DELETE by such an upstream."""
    token = (await authz.token(scope="read"))["access_token"]
    auth = {"authorization": f"Bearer {token}"}
    r = await authz.http.get("/ext_authz/documents/d1?_method=DELETE", headers=auth)
    assert (r.status_code, reason(r)) == (403, "request_override")
    r = await authz.http.get("/ext_authz/documents/d1?method=DELETE", headers=auth)
    assert r.status_code == 200
    async with grpc.aio.insecure_channel(f"127.0.0.1:{authz.app.grpc_bound}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        no = await stub.Check(grpc_check("GET", "/documents/d1?%5Fmethod=DELETE", auth))
        assert no.status.code == code_pb2.PERMISSION_DENIED
        assert {o.header.key: o.header.value for o in no.denied_response.headers} == {
            "x-meshauth-reason": "request_override"
        }
