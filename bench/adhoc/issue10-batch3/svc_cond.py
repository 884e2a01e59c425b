"""The service per decision in process on 64-item bodies of the Cedar-decided (conditioned) store, and its parts (batch2 svc_micro.py, conditioned)."""
import asyncio, sys, time, tempfile, msgspec
from pathlib import Path
sys.path.insert(0, __import__("os").getcwd())
from tests.conftest import migrate
from tests.policy.conftest import settings_for, running, push
from meshauth.bench.client_setup import CONDITIONED as POLICIES
N=64
HOIST = True
def body(r):
    return msgspec.json.encode({"action":{"name":"view"},"evaluations":[{"subject":{"type":"User","id":f"u{r}-{k}"},"resource":{"type":"Doc","id":f"d{k}"}} for k in range(N)]}) if HOIST else msgspec.json.encode({"evaluations":[{"subject":{"type":"User","id":f"u{r}-{k}"},"action":{"name":"view"},"resource":{"type":"Doc","id":f"d{k}"}} for k in range(N)]})
async def main(tmp, db):
    async with running(settings_for(db, tmp)) as (app, client):
        await push(client, POLICIES)
        api = app.app.state.api
        bodies=[body(r) for r in range(50)]
        await api.evaluations("default", bodies[0])
        rounds=2000
        t0=time.process_time()
        for r in range(rounds): await api.evaluations("default", bodies[r%50])
        dt=time.process_time()-t0
        print(f"{dt/rounds/N*1e6:.2f} us per decision: PolicyApi.evaluations in process (no HTTP)")
        from meshauth.policy import cedar
        from meshauth.policy.authzen import parse_evaluations
        from meshauth import wire
        state = await api.registry.get("default"); snap = api.registry.snapshot_for(state)
        def t(label, fn, R=2000):
            t0=time.process_time()
            for r in range(R): fn(r)
            print(f"  {label}: {(time.process_time()-t0)/R/N*1e6:.2f} us/decision")
        batches=[parse_evaluations(b, 1000) for b in bodies]
        t("parse_evaluations", lambda r: parse_evaluations(bodies[r%50], 1000))
        loop=asyncio.get_running_loop()
        t0=time.process_time()
        for r in range(2000): ds = await api.evaluator.decide(state, batches[r%50].items, snap)
        print(f"  decide: {(time.process_time()-t0)/2000/N*1e6:.2f} us/decision")
        t("encode", lambda r: wire.encode(wire.EvaluationsResponse(ds)))
        reqs=[[cedar.request(q.principal,q.action,q.resource,q.context) for q in b.items] for b in batches]
        sub = state.index.policies_for(("Action","view"), frozenset(), "User", "Doc")
        t("cedar.authorize alone", lambda r: cedar.authorize(reqs[r%50], sub.policies, snap.handle, state.schema))
        from cedarpy import _internal as I
        t("is_authorized_batch raw", lambda r: I.is_authorized_batch(reqs[r%50], sub.policies, snap.handle, state.schema, False))
        raws=[I.is_authorized_batch(reqs[r], sub.policies, snap.handle, state.schema, False) for r in range(50)]
        t("decode results", lambda r: [cedar._result_decoder.decode(x) for x in raws[r%50]])
        t("cedar.request build", lambda r: [cedar.request(q.principal,q.action,q.resource,q.context) for q in batches[r%50].items])
        t("audit", lambda r: api.audit.decisions("default", batches[r%50].items, ds, 0))
        if "prof" in sys.argv:
            import cProfile, pstats
            pr=cProfile.Profile(); pr.enable()
            for r in range(500): await api.evaluations("default", bodies[r%50])
            pr.disable(); pstats.Stats(pr).sort_stats('tottime').print_stats(30)
tmp=Path(tempfile.mkdtemp()); db=f"sqlite+aiosqlite:///{tmp}/m.db"; migrate(db)
asyncio.run(main(tmp, db))
