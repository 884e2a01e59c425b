"""In-process cost of the gate's ext_authz HTTP call: authn mode vs authz mode on a warm L1 hit.

A stand-in gate (screen() answers the cached allow verdict, as a warm bearer token does), the real
ExtAuthzHttp, RouteTable, Authorizer and PolicyClient (test transport, L1 warmed by one check).
argv: rounds (default 3), n per round (default 100000). Prints µs per request, alternated."""

import asyncio, os, sys, time, gc
import msgspec, uvloop
from meshauth.auth.authz import Authorizer
from meshauth.auth.extauthz_http import ExtAuthzHttp, target
from meshauth.auth.gate import allow
from meshauth.client import PolicyClient, Response
from meshauth.config import Settings
from meshauth.routes import parse_routes

ROUTES = 'routes:\n  - {method: GET, path: "/documents/{id}", action: read, resource: {type: Document, id: "{id}"}}\n'


class T:
    async def post(self, url, body, headers, *, timeout):
        doc = msgspec.json.decode(body)
        items = doc.get("evaluations") or [doc]
        out = [
            {"decision": True, "context": {"revision": 1, "entities_version": 1, "policies": ["p"], "errors": []}}
            for _ in items
        ]
        return Response(200, msgspec.json.encode({"evaluations": out} if "evaluations" in doc else out[0]))

    async def aclose(self):
        pass


class Audit:
    def gate(self, *a):
        pass


class Gate:
    audit = Audit()

    def __init__(self):
        self.v = allow("bench-client", "bench-client", "read write", "bearer")

    def screen(self, auths):
        return self.v


async def send(msg):
    pass


async def main(rounds, n):
    settings = Settings()
    client = PolicyClient(["http://127.0.0.1:1"], transport=T(), redis=None, warming=None)
    authz = Authorizer(settings, parse_routes(ROUTES), client, "redis://127.0.0.1:1")
    gate = Gate()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/ext_authz/documents/hot",
        "raw_path": b"/ext_authz/documents/hot",
        "headers": [(b"host", b"x"), (b"authorization", b"Bearer abc.def.ghi"), (b"user-agent", b"wrk")],
    }
    a_n, a_z = ExtAuthzHttp(gate), ExtAuthzHttp(gate, authz)
    await a_z(scope, None, send)
    assert (await authz.decide(gate.v, "GET", target(scope), asyncio.get_running_loop().time())).status == 200
    loop = asyncio.get_running_loop()
    v = gate.v

    async def run_app(app):
        for _ in range(n):
            await app(scope, None, send)

    async def run_decide():
        for _ in range(n):
            await authz.decide(v, "GET", "/documents/hot", loop.time())

    async def run_match():
        m = authz.table.match
        for _ in range(n):
            m("GET", "/documents/hot")

    async def run_check():
        from meshauth.auth.authz_questions import subject_for, credential_context

        r = {"type": "Document", "id": "hot"}
        for _ in range(n):
            await client.check(
                subject_for("bearer", "bench-client", "bench-client"),
                "read",
                r,
                credential_context("bench-client", "read write"),
                timeout=0.1,
            )

    cases = {
        "authn": lambda: run_app(a_n),
        "authz": lambda: run_app(a_z),
        "decide": run_decide,
        "match": run_match,
        "check": run_check,
    }
    res = {k: [] for k in cases}
    for _ in range(rounds):
        for k, f in cases.items():
            gc.collect()
            t = time.perf_counter()
            await f()
            res[k].append(1e6 * (time.perf_counter() - t) / n)
    for k, v in res.items():
        print(f"{k:8s} " + " ".join(f"{x:6.2f}" for x in v) + " µs")
    if not only:
        an, az = sorted(res["authn"])[len(res["authn"]) // 2], sorted(res["authz"])[len(res["authz"]) // 2]
        print(f"authz - authn (medians): {az - an:.2f} µs")


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    uvloop.run(main(rounds, n))
