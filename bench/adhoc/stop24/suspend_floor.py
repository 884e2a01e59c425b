"""What one suspension costs a granian ASGI request (stop 24): the bench's floor app answering at once,
after ``await asyncio.sleep(0)``, and after awaiting a future resolved by a loop callback (as a cold check
awaits its batch). Paced 3,000 req/s from core 1, server on core 0; CPU µs per request, alternated rounds."""
import asyncio, os, sys, tempfile
from pathlib import Path
from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.loadgen import paced
from meshauth.bench.processes import free_port, running, service_env

APP = '''
import asyncio
RAW = [(b"x-meshauth-subject", b"bench")]
MODE = {mode!r}
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if MODE == "sleep":
        await asyncio.sleep(0)
    elif MODE == "future":
        loop = asyncio.get_running_loop(); f = loop.create_future(); loop.call_soon(f.set_result, None); await f
    elif MODE == "later":
        loop = asyncio.get_running_loop(); f = loop.create_future(); loop.call_later(0.0005, f.set_result, None); await f
    await send({{"type": "http.response.start", "status": 200, "headers": RAW}})
    await send({{"type": "http.response.body", "body": b""}})
def create_app():
    return app
'''
with tempfile.TemporaryDirectory() as tmp:
    sys.path.insert(0, tmp)
    for r in range(int(os.environ.get("ROUNDS", "2"))):
        for mode in ("now", "sleep", "future", "later"):
            Path(tmp, f"f_{mode}.py").write_text(APP.format(mode=mode))
            port = free_port()
            env = {**service_env(Path(tmp), "redis://127.0.0.1:6379/15"), "PYTHONPATH": tmp + ":" + os.environ.get("PYTHONPATH", "")}
            code = f"from meshauth.granian_server import serve; serve('f_{mode}:create_app', host='127.0.0.1', port={port}, interface='asgi')"
            with running(["-c", code], env, f"http://127.0.0.1:{port}/") as p:
                paced(f"http://127.0.0.1:{port}/", rate=3000, connections=30, seconds=2, headers={})
                c0 = tree_cpu(p.pid)
                lat = paced(f"http://127.0.0.1:{port}/", rate=3000, connections=30, seconds=6, headers={})
                cpu = 1e6 * (tree_cpu(p.pid) - c0) / lat.requests
            print(f"round {r} {mode:7} cpu/req {cpu:6.1f} µs  p50 {lat.p50_ms:.2f} p95 {lat.p95_ms:.2f} p99 {lat.p99_ms:.2f}", flush=True)
