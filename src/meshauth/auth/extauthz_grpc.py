"""Envoy ext_authz, gRPC mode: ``envoy.service.auth.v3.Authorization/Check`` on ``grpc_port``.

Same gate as the HTTP mode. Allowed: ``OkHttpResponse`` with the identity headers. Refused:
``DeniedHttpResponse`` carrying the HTTP status Envoy should send (401, or 503 when a session cannot be
confirmed) and ``www-authenticate``, with the gRPC status UNAUTHENTICATED / UNAVAILABLE. Two
``Authorization`` header lines, or two session cookies, are refused, as over HTTP; identity header values
are safe visible ASCII or the check is denied (see ``gate``).

Authz mode (``MESHAUTH_ROUTES_FILE``, ``authz``): the request's ``method`` and ``path`` (as sent, no
decoding) are matched against the route table; a deny is ``DeniedHttpResponse`` 403 with
``x-meshauth-reason`` and gRPC PERMISSION_DENIED, no decision 503 ``policy_unavailable`` and UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from meshauth.auth.authz import Authorizer
from meshauth.auth.gate import Gate, Verdict, impostor, join_cookies
from meshauth.auth.metrics import GRPC_REQUEST_SECONDS, count_gate_decision
from meshauth.config import Settings
from meshauth.granian_server import grpc_connection_cap
from meshauth.observability import trace
from meshauth.routes import is_override

MAX_MESSAGE_BYTES = 1 << 20
CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"
_CLASSES = {2: "2xx", 4: "4xx", 5: "5xx"}


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def _credentials(http: attribute_context_pb2.AttributeContext.HttpRequest) -> tuple[list[str], str | None]:
    """The ``Authorization`` values and the cookie string of the checked request.

    Envoy sends headers either as the ``headers`` map (duplicates already joined, names lower-cased)
    or, with ``encode_raw_headers``, only as ``header_map`` — one entry per header line, the value in
    ``raw_value``. Reading only the map would see no credential at all in the second case.
    """
    lines = http.header_map.headers
    if not lines:
        authorization = http.headers.get("authorization")
        return ([authorization] if authorization is not None else []), http.headers.get("cookie")
    authorizations: list[str] = []
    cookies: list[str] = []
    for line in lines:
        name = line.key.lower()
        if name == "authorization" or name == "cookie":
            value = line.raw_value.decode("latin-1") if line.raw_value else line.value
            (authorizations if name == "authorization" else cookies).append(value)
    return authorizations, join_cookies(cookies)


def _header_names(http: attribute_context_pb2.AttributeContext.HttpRequest) -> Iterator[str]:
    """The checked request's header names, in whichever of Envoy's two header forms it filled."""
    lines = http.header_map.headers
    return (line.key for line in lines) if lines else iter(http.headers)


def _overridden(http: attribute_context_pb2.AttributeContext.HttpRequest) -> bool:
    """Whether the checked request carries a method or URL override header (``routes.OVERRIDE_HEADERS``),
    in either of Envoy's header forms, ``_`` read as ``-``."""
    return any(is_override(name.lower().encode("utf-8")) for name in _header_names(http))


def _impostors(http: attribute_context_pb2.AttributeContext.HttpRequest) -> list[str]:
    """The identity-header impostors the checked request carries (``gate.impostor``), in either of
    Envoy's header forms: an allow has Envoy remove them from the upstream request."""
    found = [name.lower() for name in _header_names(http) if "_" in name]  # the usual request has none: one test each
    return list(dict.fromkeys(n for n in found if impostor(n.encode("utf-8")))) if found else []


def _header_values(http: attribute_context_pb2.AttributeContext.HttpRequest) -> trace.HeaderValues:
    """The checked request's header lines of a name (its request context reads ``x-request-id`` and
    ``traceparent``). The ``headers`` map has duplicates joined with "," already, which no id accepts;
    Envoy's own request id (``http.id``) stands in for a missing ``x-request-id``."""

    def values(name: str) -> list[str]:
        lines = http.header_map.headers
        if lines:
            found = [
                line.raw_value.decode("latin-1") if line.raw_value else line.value
                for line in lines
                if line.key.lower() == name
            ]
        else:
            value = http.headers.get(name)
            found = [] if value is None else [value]
        if not found and name == trace.REQUEST_ID_HEADER and http.id:
            found = [http.id]
        return found

    return values


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, gate: Gate, authorizer: Authorizer | None = None) -> None:
        self._gate = gate
        self._authz = authorizer

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        timer = time.perf_counter()
        http = request.attributes.request.http
        ctx = trace.RequestContext(_header_values(http))
        span = trace.tracer.server(ctx, "Check", {"rpc.method": CHECK_METHOD}) if trace.tracer is not None else None
        token = trace.current.set(ctx)
        status = 500
        verdict: Verdict | None = None
        try:
            verdict = await self._decide(request)
            status = verdict.status
            return self._response(verdict, http)
        finally:
            trace.current.reset(token)
            GRPC_REQUEST_SECONDS.observe(
                time.perf_counter() - timer, CHECK_METHOD, _CLASSES.get(status // 100, "other")
            )
            if span is not None and trace.tracer is not None:
                trace.tracer.end(
                    span, None if status < 500 else f"HTTP {status}", {"http.response.status_code": status}
                )
            if verdict is not None and self._gate.audit.producer is not None:
                # After the answer, as over HTTP: grpc.aio serializes the returned message and starts
                # sending it in the step that ends this coroutine, before the loop runs this callback;
                # a client gone by then does not stop it. A check cancelled before its verdict (the
                # client went away while it waited) decided nothing and is not audited.
                asyncio.get_running_loop().call_soon(
                    self._gate.audit.gate,
                    verdict.status,
                    verdict.headers,
                    verdict.reason,
                    "grpc",
                    http.path,
                    verdict.identity,
                )

    async def _decide(self, request: external_auth_pb2.CheckRequest) -> Verdict:
        started = asyncio.get_running_loop().time()
        http = request.attributes.request.http
        authorizations, cookie = _credentials(http)
        verdict = self._gate.screen(authorizations)
        if verdict is None:
            verdict = await self._gate.check(authorizations[0] if authorizations else None, cookie)
        if self._authz is not None:
            verdict = await self._authz.decide(verdict, http.method, http.path, started, overridden=_overridden(http))
        count_gate_decision("grpc", verdict.credential, verdict.status)
        return verdict

    def _response(
        self, verdict: Verdict, http: attribute_context_pb2.AttributeContext.HttpRequest
    ) -> external_auth_pb2.CheckResponse:
        if verdict.allowed:
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.OK),
                ok_response=external_auth_pb2.OkHttpResponse(
                    headers=[_header(k, v) for k, v in verdict.headers], headers_to_remove=_impostors(http)
                ),
            )
        return self._denied(verdict.status, verdict.headers, verdict.reason)

    @staticmethod
    def _denied(status: int, headers: tuple[tuple[str, str], ...], reason: str = "") -> external_auth_pb2.CheckResponse:
        code = (
            code_pb2.UNAVAILABLE
            if status >= 500
            else code_pb2.PERMISSION_DENIED
            if status == 403
            else code_pb2.UNAUTHENTICATED
        )
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code, message=reason),
            denied_response=external_auth_pb2.DeniedHttpResponse(
                status=http_status_pb2.HttpStatus(code=status),
                headers=[_header(k, v) for k, v in headers],
                body=reason,
            ),
        )


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """The listener's limits (settings block "Transport" in ``config.py``).

    The C core kept answering with 2,500 idle TCP connections held (issue 7); these bound how many
    connections the process holds (``grpc_max_connections``: beyond it a new connection is closed
    at once, so the fd table stays usable for the database, Redis and the HTTP port), and what each
    may hold and for how long: a peer must finish the HTTP/2 handshake within
    ``grpc_handshake_timeout`` (a silent socket is closed); a connection with no call in flight for
    ``grpc_max_connection_idle`` is sent GOAWAY (Envoy reconnects on its next check); one
    connection runs at most ``grpc_max_concurrent_streams`` calls at once; keepalive pings every
    ``grpc_keepalive_time`` find dead peers."""
    ms = 1000
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 1),
        ("grpc.max_allowed_incoming_connections", grpc_connection_cap(settings)),
        ("grpc.server_handshake_timeout_ms", int(settings.grpc_handshake_timeout * ms)),
        ("grpc.max_connection_idle_ms", int(settings.grpc_max_connection_idle * ms)),
        ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
        ("grpc.keepalive_time_ms", int(settings.grpc_keepalive_time * ms)),
        ("grpc.keepalive_timeout_ms", int(settings.grpc_keepalive_timeout * ms)),
    ]


async def start_grpc_server(
    gate: Gate, *, host: str, port: int, settings: Settings, authorizer: Authorizer | None = None
) -> tuple[grpc.aio.Server, int]:
    """Start serving; returns the server and the port it bound (useful with port 0)."""
    server = grpc.aio.server(options=grpc_options(settings))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AuthorizationServicer(gate, authorizer), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind gRPC ext_authz to {host}:{port}")
    await server.start()
    return server, bound
