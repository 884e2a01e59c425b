import asyncio, sys, time, tempfile, msgspec
from pathlib import Path
sys.path.insert(0, "/work/wt-batch")
from tests.conftest import migrate
from tests.policy.conftest import settings_for, running, push
from meshauth.bench.client_setup import POLICIES
from meshauth.policy import evaluator as ev
from meshauth.policy.authzen import parse_evaluations
N=64
def body(r):
    return msgspec.json.encode({"evaluations":[{"subject":{"type":"User","id":f"u{r}-{k}"},"action":{"name":"view"},"resource":{"type":"Doc","id":f"d{k}"}} for k in range(N)]})
async def main(tmp, db):
    async with running(settings_for(db, tmp)) as (app, client):
        await push(client, POLICIES)
        api = app.app.state.api
        state = await api.registry.get("default"); snap = api.registry.snapshot_for(state)
        batches=[parse_evaluations(body(r), 1000) for r in range(50)]
        new_run = ev.Evaluator._run
        src = open('/tmp/old_evaluator.py').read()
        ns = {}
        import types
        old_mod = types.ModuleType("old_ev"); exec(compile(src, "old_ev", "exec"), old_mod.__dict__)
        res = {"old": [], "new": []}
        for rep in range(5):
            for name, E in (("old", old_mod.Evaluator), ("new", ev.Evaluator)):
                e = E(api.evaluator.loader)
                t0=time.process_time()
                for r in range(1500): await e.decide(state, batches[r%50].items, snap)
                res[name].append((time.process_time()-t0)/1500/N*1e6)
        for k,v in res.items(): print(k, " ".join(f"{x:.2f}" for x in v), "min", f"{min(v):.2f}")
tmp=Path(tempfile.mkdtemp()); db=f"sqlite+aiosqlite:///{tmp}/m.db"; migrate(db)
asyncio.run(main(tmp, db))
