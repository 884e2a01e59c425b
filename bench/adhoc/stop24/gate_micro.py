"""The gate's in-process CPU per ext_authz request (stop 24): the auth app driven through raw ASGI calls
(no server), a real policy service (subprocess, core 1) and an embedded Valkey (core 1).

Usage: gate_micro.py [prof] [nol2] [noaudit]  — K concurrent callers, N requests each, per mode: authn-like (unmatched
path, default deny: no policy call), warm (one path), cold (every path new). Prints process CPU µs per
request (this process only: the gate's Python without granian) and, with prof, cProfile's top of cold."""
import asyncio, cProfile, os, pstats, sys, tempfile, time
from pathlib import Path
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from meshauth.auth.app import AuthApp
from meshauth.bench.valkey_here import local_valkey
from meshauth.db import migrate
from tests.auth.conftest import Harness, make_settings
from tests.client.served import DECISION_TOKEN, policy_server, push
import httpx

K = int(os.environ.get("K", "8"))
N = int(os.environ.get("N", "3000"))
ROUTES = 'routes:\n  - {method: GET, path: "/documents/{id}", action: read, resource: {type: Document, id: "{id}"}}\n'
POLICY = '@id("r") permit(principal == Client::"svc", action == Action::"read", resource);'


async def main(var: Path, valkey_url: str, policy_url: str) -> None:
    (var / "routes.yaml").write_text(ROUTES)
    s = make_settings(f"sqlite:///{var}/gate.db", valkey_url, var, routes_file=var / "routes.yaml",
                      policy_urls=(policy_url,), policy_decision_token=DECISION_TOKEN,
                      **({"policy_l2_enabled": False} if "nol2" in sys.argv else {}),
                      **({"audit_enabled": False} if "noaudit" in sys.argv else {}))
    app = AuthApp(s)
    async with app.running():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            h = Harness(app, http)
            await h.add_client()
            tok = (await h.token(scope="read"))["access_token"]
        auth = [(b"authorization", f"Bearer {tok}".encode()), (b"host", b"gate")]
        statuses: dict[int, int] = {}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def one(path: str) -> None:
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "root_path": "", "headers": auth, "client": ("10.0.0.1", 1234), "server": ("gate", 80)}
            async def send(m):
                if m["type"] == "http.response.start":
                    statuses[m["status"]] = statuses.get(m["status"], 0) + 1
            await app(scope, receive, send)

        async def run(kind: str, prefix: str) -> float:
            async def worker(w: int) -> None:
                for i in range(N):
                    await one("/ext_authz/documents/hot" if kind == "warm" else
                              f"/ext_authz/other/{w}-{i}" if kind == "authn" else f"{prefix}{w}-{i}")
            t0 = time.process_time()
            await asyncio.gather(*(worker(w) for w in range(K)))
            return 1e6 * (time.process_time() - t0) / (K * N)

        for r in range(3):
            line = {}
            for kind in ("authn", "warm", "cold"):
                statuses.clear()
                line[kind] = round(await run(kind, f"/ext_authz/documents/c{r}-{kind}-"), 1)
                line[kind + "_st"] = dict(statuses)
            print(line, flush=True)
        if "prof" in sys.argv:
            p = cProfile.Profile()
            p.enable()
            await run("cold", "/ext_authz/documents/prof-")
            p.disable()
            p.dump_stats("/tmp/gate_cold.prof")
            pstats.Stats(p).sort_stats("tottime").print_stats(40)
            pstats.Stats(p).sort_stats("cumtime").print_stats(60)


with tempfile.TemporaryDirectory() as tmp, local_valkey(1) as valkey:
    with policy_server(Path(tmp) / "pdp" if (Path(tmp) / "pdp").mkdir() is None else None) as (url, proc):
        os.system(f"taskset -a -p -c 1 {proc.pid} >/dev/null")
        push(url, POLICY)
        os.sched_setaffinity(0, {0})
        migrate(f"sqlite+aiosqlite:///{tmp}/gate.db")
        uvloop.run(main(Path(tmp), valkey.url, url))
