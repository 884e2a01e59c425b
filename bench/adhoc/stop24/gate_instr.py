"""Instructions per ext_authz request in the gate's process (stop 24), counted by callgrind: deterministic
where CPU time on this shared machine is not. The auth app driven through raw ASGI calls, a stand-in
policy transport answering at once (no network: batches of exactly K), an embedded Valkey for Redis.

Usage: valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/gi.%p python gate_instr.py MODE
INSTRUMENTED=1: wrapped as served. MODE: cold | warm | authn (an unmatched path: the route table's 403, no policy check) | authnmode (no route
file: the gate authenticates only, the warm path's 200). OFF=audit_enabled,policy_l2_enabled,…: settings switched off. The script switches instrumentation on for the measured rounds only (callgrind_control),
then prints the instructions per request from the dump."""
import asyncio, glob, os, subprocess, sys, tempfile
from pathlib import Path
import msgspec, uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from meshauth.auth.app import AuthApp
from meshauth.bench.valkey_here import local_valkey
from meshauth.client import Response
from meshauth.db import migrate
from tests.auth.conftest import Harness, make_settings
import httpx

MODE = sys.argv[1]
for patch in filter(None, os.environ.get("PATCH", "").split(",")):  # PATCH=module.NAME=value,…: constants tried
    target, value = patch.split("=")
    module, name = target.rsplit(".", 1)
    setattr(__import__(module, fromlist=[name]), name, type(getattr(__import__(module, fromlist=[name]), name))(value))
K, WARM, ROUNDS = 4, 600, int(os.environ.get("ROUNDS", "300"))
ROUTES = 'routes:\n  - {method: GET, path: "/documents/{id}", action: read, resource: {type: Document, id: "{id}"}}\n'
ITEM = {"decision": True, "context": {"revision": 1, "entities_version": 1, "policies": ["r"], "errors": []}}
RESP = {n: msgspec.json.encode({"evaluations": [ITEM] * n}) for n in range(2, 65)}
ONE = msgspec.json.encode(ITEM)


class Fake:
    async def post(self, url, body, headers, *, timeout):
        n = body.count(b'"subject"')
        return Response(200, ONE if n == 1 else RESP[n])

    async def aclose(self):
        pass


async def main(var: Path, valkey_url: str) -> None:
    (var / "routes.yaml").write_text(ROUTES)
    s = make_settings(f"sqlite:///{var}/gate.db", valkey_url, var, routes_file=None if MODE == "authnmode" else var / "routes.yaml",
                      policy_urls=("http://127.0.0.1:9",), policy_check_deadline=5.0,
                      **{k: False for k in os.environ.get("OFF", "").split(",") if k})
    app = AuthApp(s)
    async with app.running():
        if app.authorizer is not None:
            app.authorizer.client._caller.transport = Fake()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            h = Harness(app, http)
            await h.add_client()
            tok = (await h.token(scope="read"))["access_token"]
        served = app
        if os.environ.get("INSTRUMENTED"):  # as granian_server.worker_app serves it
            from meshauth.observability.requests import Instrumented
            served = Instrumented(app, prefixes=tuple(getattr(app, "route_prefixes", ())))
        auth = [(b"authorization", f"Bearer {tok}".encode()), (b"host", b"gate")]
        bad = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def one(path: str) -> None:
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "root_path": "", "headers": auth, "client": ("10.0.0.1", 1234), "server": ("gate", 80)}
            async def send(m):
                if m["type"] == "http.response.start" and m["status"] != (403 if MODE == "authn" else 200):
                    bad.append(m["status"])
            await served(scope, receive, send)

        async def rounds(n: int, tag: str) -> None:
            for r in range(n):
                await asyncio.gather(*(one("/ext_authz/documents/hot" if MODE in ("warm", "authnmode") else "/ext_authz/other/x" if MODE == "authn"
                                         else f"/ext_authz/documents/{tag}{r}-{k}") for k in range(K)))

        await rounds(WARM, "w")
        if os.environ.get("GCSTATS"):  # collections during the measured rounds, and their time
            import gc, time as _t
            stats = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
            t0 = [0.0]
            def cb(phase, info):
                if phase == "start":
                    t0[0] = _t.perf_counter()
                else:
                    stats[info["generation"]][0] += 1
                    stats[info["generation"]][1] += _t.perf_counter() - t0[0]
            gc.callbacks.append(cb)
            c0 = _t.process_time()
            await rounds(ROUNDS, "m")
            cpu = _t.process_time() - c0
            gc.callbacks.remove(cb)
            n = ROUNDS * K
            print({g: (c, round(1e6 * t / n, 2)) for g, (c, t) in stats.items()}, f"µs GC per request; cpu {1e6 * cpu / n:.1f} µs per request")
            return
        if os.environ.get("PROF"):  # cProfile of the measured rounds instead (PROF=path of the stats file)
            import cProfile
            p = cProfile.Profile()
            p.enable()
            await rounds(ROUNDS, "m")
            p.disable()
            p.dump_stats(os.environ["PROF"])
            return
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
        await rounds(ROUNDS, "m")
        subprocess.run(["callgrind_control", "-d", str(os.getpid())], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
        assert not bad, bad[:5]


with tempfile.TemporaryDirectory() as tmp, local_valkey(1) as valkey:
    migrate(f"sqlite+aiosqlite:///{tmp}/gate.db")
    uvloop.run(main(Path(tmp), valkey.url))
    dumps = sorted(glob.glob(f"/tmp/gi.{os.getpid()}*"), key=os.path.getmtime)
    total = 0
    for d in dumps:
        for line in open(d):
            if line.startswith("summary:") or line.startswith("totals:"):
                total = max(total, int(line.split()[1]))
                break
    print(f"{MODE}: {total / (ROUNDS * K):,.0f} instructions per request ({dumps[-1] if dumps else None})")
