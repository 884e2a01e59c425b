"""PolicyMiddleware guards a Starlette app with the route table and a real policy service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from meshauth.client import PolicyClient
from meshauth.client.asgi import Caller, PolicyMiddleware, caller_from_identity_headers
from meshauth.routes import parse_routes
from tests.client.served import DECISION_TOKEN, policy_server, push
from tests.served import free_port

POLICIES = """
@id("alice-reads") permit(principal == User::"alice", action == Action::"read", resource);
@id("svc-reads") permit(principal == Client::"svc", action == Action::"read", resource)
  when { context.scope.contains("read") };
@id("no-r%41w") forbid(principal, action, resource == Document::"r%41w");
"""
ROUTES = parse_routes(
    """
default: authenticated
routes:
  - {method: GET, path: "/documents/{id}", action: read, resource: {type: Document, id: "{id}"}}
  - {method: DELETE, path: "/documents/{id}", action: delete, resource: {type: Document, id: "{id}"}}
"""
)


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("served")


APP = Starlette(routes=[Route("/documents/{id}", ok, methods=["GET", "DELETE"]), Route("/open", ok)])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with policy_server(tmp_path_factory.mktemp("pdp")) as (url, _proc):
        push(url, POLICIES)
        yield url


async def user_from_header(scope: Scope) -> Caller | None:
    """A toy authenticator: ``x-user`` names the user (the app's own authentication in real life)."""
    for name, value in scope["headers"]:
        if name == b"x-user":
            return Caller({"type": "User", "id": value.decode()})
    return None


@pytest.fixture
async def guarded(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with PolicyClient([server], token=DECISION_TOKEN, timeout=2) as client:
        app = PolicyMiddleware(APP, client=client, routes=ROUTES, subject=user_from_header)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            yield http


async def test_policy_allows_and_denies(guarded: httpx.AsyncClient) -> None:
    r = await guarded.get("/documents/d1", headers={"x-user": "alice"})
    assert (r.status_code, r.text) == (200, "served")
    r = await guarded.delete("/documents/d1", headers={"x-user": "alice"})
    assert (r.status_code, r.headers["x-meshauth-reason"]) == (403, "policy_denied")
    r = await guarded.get("/documents/d1", headers={"x-user": "bob"})
    assert r.status_code == 403


async def test_no_subject_is_401_before_any_route(guarded: httpx.AsyncClient) -> None:
    for path in ("/documents/d1", "/open", "/documents/..%2f"):
        r = await guarded.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


async def test_table_denials_and_default(guarded: httpx.AsyncClient) -> None:
    alice = {"x-user": "alice"}
    assert (await guarded.get("/open", headers=alice)).text == "served"  # default: authenticated
    r = await guarded.post("/documents/d1", headers=alice)
    assert (r.status_code, r.headers["x-meshauth-reason"]) == (403, "method_not_routed")
    r = await guarded.get("/documents/%2e%2e", headers=alice)
    assert (r.status_code, r.headers["x-meshauth-reason"]) == (403, "path_not_canonical")


async def test_a_server_without_raw_path_is_matched_on_the_path_re_encoded(server: str) -> None:
    """ASGI makes ``raw_path`` optional (Mangum sends None). The decoded ``path`` was matched as if it
    were sent, decoded a second time: ``/documents/r%2541w`` (the app serves ``r%41w``, forbidden)
    asked about ``rAw`` and was served. Re-encoded, as the gate does (``extauthz_http.target``), it is
    judged as sent: a double escape is refused, and a non-ASCII id is asked about, not refused."""

    async def without_raw_path(scope: Scope, receive: Receive, send: Send) -> None:
        await guard({k: v for k, v in scope.items() if k != "raw_path"}, receive, send)

    async with PolicyClient([server], token=DECISION_TOKEN, timeout=2) as client:
        guard = PolicyMiddleware(APP, client=client, routes=ROUTES, subject=user_from_header)
        transport = httpx.ASGITransport(app=without_raw_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            alice = {"x-user": "alice"}
            r = await http.get("/documents/r%2541w", headers=alice)
            assert (r.status_code, r.headers.get("x-meshauth-reason")) == (403, "path_not_canonical")
            assert (await http.get("/documents/caf%C3%A9", headers=alice)).text == "served"


@pytest.mark.parametrize("prefixed", [False, True], ids=["app-paths", "full-paths"])
async def test_a_root_path_does_not_hide_the_routes(server: str, prefixed: bool) -> None:
    """Under a root path — a Starlette ``Mount``, or ``uvicorn --root-path`` (which prefixes ``path``
    and ``raw_path`` both) — the app routes ``/documents/d1`` for ``/api/documents/d1``: a table of the
    app's paths matched nothing, and ``default: authenticated`` served any document unasked. Both
    spellings are matched now, the stricter wins, so a table of the full paths still holds too."""
    base = "/api" if prefixed else ""
    route = (
        f'{{method: GET, path: "{base}/documents/{{id}}", action: read, resource: {{type: Document, id: "{{id}}"}}}}'
    )
    table = parse_routes(f"default: authenticated\nroutes:\n  - {route}\n")
    async with PolicyClient([server], token=DECISION_TOKEN, timeout=2) as client:
        guard = PolicyMiddleware(APP, client=client, routes=table, subject=user_from_header)
        mounted = Starlette(routes=[Mount("/api", app=guard)])
        for app, root_path in ((mounted, ""), (guard, "/api")):
            transport = httpx.ASGITransport(app=app, root_path=root_path)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                r = await http.get("/api/documents/d1", headers={"x-user": "bob"})
                assert (r.status_code, r.headers.get("x-meshauth-reason")) == (403, "policy_denied"), root_path
                assert (await http.get("/api/documents/d1", headers={"x-user": "alice"})).text == "served"
            if app is mounted:  # the mount's path spelled otherwise: which route would that be?
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    r = await http.get("/%61pi/documents/d1", headers={"x-user": "bob"})
                    assert (r.status_code, r.headers.get("x-meshauth-reason")) == (403, "path_not_canonical")


async def test_override_headers_are_refused(guarded: httpx.AsyncClient) -> None:
    """A method or URL override the app's own stack may obey (Rack, Express, Symfony) is 403, even on
    a default-authenticated path: the check would be of one request and the app serve another."""
    alice = {"x-user": "alice"}
    for name, value in (
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-Original-URL", "/documents/d1"),
        ("X_HTTP_Method_Override", "DELETE"),  # the same header to CGI-style stacks (HTTP_X_HTTP_METHOD_OVERRIDE)
    ):
        for path in ("/documents/d1", "/open"):
            r = await guarded.get(path, headers={**alice, name: value})
            assert (r.status_code, r.headers.get("x-meshauth-reason")) == (403, "request_override"), (name, path)
    assert (await guarded.get("/documents/d1", headers={name: "DELETE"})).status_code == 401  # authn first


async def test_a_method_override_parameter_is_refused(guarded: httpx.AsyncClient) -> None:
    """``?_method=DELETE``: Express methodOverride and Symfony serve the POST as a DELETE."""
    alice = {"x-user": "alice"}
    for path in ("/documents/d1?_method=DELETE", "/open?%5Fmethod=PUT"):
        r = await guarded.post(path, headers=alice)
        assert (r.status_code, r.headers.get("x-meshauth-reason")) == (403, "request_override"), path


async def test_policy_unavailable_is_503() -> None:
    async with PolicyClient([f"http://127.0.0.1:{free_port()}"], timeout=0.2) as client:
        app = PolicyMiddleware(APP, client=client, routes=ROUTES, subject=user_from_header)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            r = await http.get("/documents/d1", headers={"x-user": "alice"})
    assert (r.status_code, r.headers["x-meshauth-reason"]) == (503, "policy_unavailable")


async def test_a_failing_subject_function_is_401(server: str) -> None:
    async def broken(scope: Scope) -> Caller | None:
        raise RuntimeError("boom")

    async with PolicyClient([server], token=DECISION_TOKEN) as client:
        app = PolicyMiddleware(APP, client=client, routes=ROUTES, subject=broken)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            assert (await http.get("/documents/d1")).status_code == 401


async def test_trusted_identity_headers(server: str) -> None:
    """With trust_identity_headers, the gate's headers name the caller; missing or doubled ones are 401."""
    async with PolicyClient([server], token=DECISION_TOKEN) as client:
        app = PolicyMiddleware(APP, client=client, routes=ROUTES, trust_identity_headers=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            svc = {"x-meshauth-subject": "svc", "x-meshauth-client-id": "svc", "x-meshauth-scope": "read write"}
            assert (await http.get("/documents/d1", headers=svc)).status_code == 200
            r = await http.get("/documents/d1", headers={**svc, "x-meshauth-scope": "write"})
            assert r.status_code == 403
            assert (await http.get("/documents/d1", headers={"x-meshauth-subject": "svc"})).status_code == 401
            doubled = [*svc.items(), ("x-meshauth-subject", "alice")]
            assert (await http.get("/documents/d1", headers=doubled)).status_code == 401


def test_identity_headers_subject_kinds() -> None:
    def caller(sub: str, cid: str) -> Caller | None:
        headers = [
            (b"x-meshauth-subject", sub.encode()),
            (b"x-meshauth-client-id", cid.encode()),
            (b"x-meshauth-scope", b"a b"),
        ]
        return caller_from_identity_headers({"type": "http", "headers": headers})

    client = caller("svc", "svc")
    assert client is not None and client.subject.type == "Client"  # type: ignore[union-attr]
    assert client.context == {"scope": ["a", "b"], "client_id": "svc"}
    user = caller("alice", "web")
    assert user is not None and user.subject.type == "User"  # type: ignore[union-attr]
    session = caller("meshauth-session", "meshauth-session")
    assert session is not None and session.subject.type == "User"  # type: ignore[union-attr]
    assert caller("", "svc") is None


def test_subject_source_is_required() -> None:
    """No default subject source: guessing one would be unsafe."""
    with pytest.raises(ValueError, match="exactly one of"):
        PolicyMiddleware(APP, client=None, routes=ROUTES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one of"):
        PolicyMiddleware(APP, client=None, routes=ROUTES, subject=user_from_header, trust_identity_headers=True)  # type: ignore[arg-type]


async def test_lifespan_passes_through() -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: object, send: object) -> None:
        seen.append(scope["type"])

    mw = PolicyMiddleware(inner, client=None, routes=ROUTES, trust_identity_headers=True)  # type: ignore[arg-type]
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
