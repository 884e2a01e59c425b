"""PolicyApi.evaluations in process on the cold bench's shape: N items (default 3), the gate's context,
a Client principal, distinct resources per call; audit on against a private Valkey (``audit`` arg) or off.
Run from the worktree root: PYTHONPATH=$PWD/src python bench/adhoc/issue10-cold3/svc_micro.py [N] [audit] [prof]"""
import asyncio, sys, time, tempfile, msgspec, os
from pathlib import Path
sys.path.insert(0, os.getcwd())
from tests.conftest import migrate
from tests.policy.conftest import settings_for, running, push
from meshauth.bench.valkey_here import local_valkey
N = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 3
POLICY = '@id("bench-reads") permit(principal == Client::"bench", action == Action::"read", resource);'
CTX = {"scope": ["openid", "documents:read"], "client_id": "bench"}
def body(r):
    return msgspec.json.encode({"evaluations": [{"subject": {"type": "Client", "id": "bench"}, "action": {"name": "read"},
        "resource": {"type": "Document", "id": f"c{r}-{k}"}, "context": CTX} for k in range(N)]})
async def main(tmp, db, redis_url):
    extra = {"redis_url": redis_url} if redis_url else {}
    async with running(settings_for(db, tmp, **extra)) as (app, client):
        await push(client, POLICY)
        api = app.app.state.api
        print("audit producer:", api.audit.producer is not None)
        bodies = [body(r) for r in range(5000)]
        await api.evaluations("default", bodies[0])
        for rnd in range(3):
            t0 = time.process_time()
            for r in range(5000): await api.evaluations("default", bodies[r])
            dt = time.process_time() - t0
            print(f"{dt/5000*1e6:.1f} us per call, {dt/5000/N*1e6:.1f} per decision: PolicyApi.evaluations in process (N={N})")
            await asyncio.sleep(0.2)
        if "prof" in sys.argv:
            import cProfile, pstats
            pr = cProfile.Profile(); pr.enable()
            for r in range(3000): await api.evaluations("default", bodies[r])
            pr.disable(); pstats.Stats(pr).sort_stats("tottime").print_stats(25)
tmp = Path(tempfile.mkdtemp()); db = f"sqlite+aiosqlite:///{tmp}/m.db"; migrate(db)
if "audit" in sys.argv:
    with local_valkey() as v: asyncio.run(main(tmp, db, v.url))
else:
    asyncio.run(main(tmp, db, None))
