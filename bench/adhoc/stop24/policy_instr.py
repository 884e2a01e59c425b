"""Instructions per `evaluations` call in the policy service's process (stop 24), counted by callgrind: the
served RSGI path in process — Instrumented(DecisionFront) over a stand-in granian protocol whose body is
ready — on the cold row's 3-check body (one action sent once, the gate's context), an embedded Valkey
for the audit producer, distinct resources every call (as the cold row asks).

Usage: valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/pi.%p python policy_instr.py
OFF=audit_enabled,…: settings off. PROF=path: cProfile of the measured calls instead."""
import asyncio, glob, os, subprocess, sys, tempfile
from pathlib import Path
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.conftest import migrate
from tests.policy.conftest import push, running, settings_for
from meshauth.bench.valkey_here import local_valkey
from meshauth.observability.requests import Instrumented

N, WARM, CALLS = 3, 500, int(os.environ.get("CALLS", "500"))
POLICY = '@id("bench-reads") permit(principal == Client::"bench", action == Action::"read", resource);'
CTX = {"scope": ["openid", "documents:read"], "client_id": "bench"}


def body(tag, r):
    return msgspec.json.encode({"action": {"name": "read"}, "evaluations": [
        {"subject": {"type": "Client", "id": "bench"}, "resource": {"type": "Document", "id": f"{tag}{r}-{k}"}, "context": CTX}
        for k in range(N)]})


class Headers(dict):
    def items(self): return list(super().items())


class Scope:
    proto = "http"; method = "POST"; path = "/stores/default/access/v1/evaluations"; query_string = ""
    http_version = "1.1"; scheme = "http"; client = "127.0.0.1:1"; server = "127.0.0.1:2"
    def __init__(self, n): self.headers = Headers({"content-type": "application/json", "content-length": str(n), "host": "x"})


class Proto:
    __slots__ = ("body", "loop", "sent")
    def __init__(self, body, loop): self.body = body; self.loop = loop; self.sent = None
    def __call__(self):
        f = self.loop.create_future(); f.set_result(self.body); return f
    def response_bytes(self, status, headers, body): self.sent = (status, headers, body)


async def main(tmp, db, valkey_url):
    off = {k: False for k in os.environ.get("OFF", "").split(",") if k}
    async with running(settings_for(db, tmp, redis_url=valkey_url, **off)) as (front, client):
        await push(client, POLICY)
        inst = Instrumented(front, prefixes=())
        loop = asyncio.get_running_loop()

        async def calls(n, tag):
            for r in range(n):
                b = body(tag, r)
                p = Proto(b, loop)
                await inst.__rsgi__(Scope(len(b)), p)
                assert p.sent[0] == 200, p.sent

        await calls(WARM, "w")
        if os.environ.get("PROF"):
            import cProfile
            pr = cProfile.Profile(); pr.enable(); await calls(CALLS, "m"); pr.disable(); pr.dump_stats(os.environ["PROF"]); return
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
        await calls(CALLS, "m")
        subprocess.run(["callgrind_control", "-d", str(os.getpid())], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)


tmp = Path(tempfile.mkdtemp()); db = f"sqlite+aiosqlite:///{tmp}/m.db"; migrate(db)
with local_valkey(1) as valkey:
    import uvloop
    uvloop.run(main(tmp, db, valkey.url))
if not os.environ.get("PROF"):
    dumps = sorted(glob.glob(f"/tmp/pi.{os.getpid()}*"), key=os.path.getmtime)
    total = next((int(l.split()[1]) for l in open(dumps[-1]) if l.startswith(("summary:", "totals:"))), 0)
    print(f"{total / CALLS:,.0f} instructions per {N}-check call ({dumps[-1]})")
