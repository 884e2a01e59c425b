"""The RSGI serving glue in process: Instrumented(DecisionFront) against PolicyApi.evaluations alone,
on the cold bench's 3-item body, with a fake granian protocol whose body future is already done.
Run from the tree root under the lock: PYTHONPATH=$PWD/src python bench/adhoc/policy4/glue_micro.py [N]"""
import asyncio, os, sys, tempfile, time
from pathlib import Path
import msgspec
sys.path.insert(0, os.getcwd())
from tests.conftest import migrate
from tests.policy.conftest import settings_for, running, push
from meshauth.observability.requests import Instrumented

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3
POLICY = '@id("bench-reads") permit(principal == Client::"bench", action == Action::"read", resource);'
CTX = {"scope": ["openid", "documents:read"], "client_id": "bench"}

def body(r):
    return msgspec.json.encode({"evaluations": [{"subject": {"type": "Client", "id": "bench"}, "action": {"name": "read"},
        "resource": {"type": "Document", "id": f"c{r}-{k}"}, "context": CTX} for k in range(N)]})

class Headers(dict):
    def items(self): return list(super().items())

class Scope:
    proto = "http"; method = "POST"; path = "/access/v1/evaluations"; query_string = ""; http_version = "1.1"
    scheme = "http"; client = "127.0.0.1:1"; server = "127.0.0.1:2"
    def __init__(self, n): self.headers = Headers({"content-type": "application/json", "content-length": str(n), "host": "x"})

class Proto:
    __slots__ = ("body", "loop", "sent")
    def __init__(self, body, loop): self.body = body; self.loop = loop; self.sent = None
    def __call__(self):
        f = self.loop.create_future(); f.set_result(self.body); return f
    def response_bytes(self, status, headers, body): self.sent = (status, headers, body)

async def main(tmp, db):
    async with running(settings_for(db, tmp)) as (app, client):
        await push(client, POLICY)
        front = app
        api = app.app.state.api
        inst = Instrumented(front, prefixes=())
        loop = asyncio.get_running_loop()
        bodies = [body(r) for r in range(4000)]
        scopes = [Scope(len(b)) for b in bodies]
        for rnd in range(5):
            t0 = time.process_time()
            for r in range(4000): await api.evaluations("default", bodies[r])
            t1 = time.process_time()
            for r in range(4000):
                p = Proto(bodies[r], loop); await front.__rsgi__(scopes[r], p)
            t2 = time.process_time()
            for r in range(4000):
                p = Proto(bodies[r], loop); await inst.__rsgi__(scopes[r], p)
            t3 = time.process_time()
            assert p.sent[0] == 200, p.sent
            print(f"handler {(t1-t0)/4*1e3:.1f}  front {(t2-t1)/4*1e3:.1f}  instrumented+front {(t3-t2)/4*1e3:.1f} us/call", flush=True)
            await asyncio.sleep(0.1)

tmp = Path(tempfile.mkdtemp()); db = f"sqlite+aiosqlite:///{tmp}/m.db"; migrate(db)
asyncio.run(main(tmp, db))
