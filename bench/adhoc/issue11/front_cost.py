"""In-process cost of the decision path beyond HTTP, coalescing off against on (issue 11, stop 18).

The issue-3 store in a fresh SQLite file; two apps (coalescing off, on) built with create_app and
their lifespans running; 16 tasks each sending single evaluations straight to the decision front's
``answer`` (what the RSGI path calls after reading the body), counted in ``Activity`` as the front
counts them, with one loop turn between requests (the HTTP write and next read); also 64-item
``evaluations``. Settings alternate, best of PASSES. argv: [passes] [--profile on|off] [--uvloop].
"""
import asyncio, cProfile, json, pstats, sys, tempfile, time
from pathlib import Path

from starlette.applications import Starlette

from meshauth.bench import policy_workload as workload
from meshauth.config_load import load_settings
from meshauth.policy.app import create_app
import httpx

PASSES = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 5
PROFILE = sys.argv[sys.argv.index("--profile") + 1] if "--profile" in sys.argv else None
N = 4000
ADMIN = {"authorization": "Bearer t"}


async def singles(front, bodies, inflight=16):
    act = front.activity
    it = iter(bodies)

    async def worker():
        for body in it:
            if act is not None:
                act.active += 1
            try:
                status, _, _ = await front.answer("evaluation", "default", body)
            finally:
                if act is not None:
                    act.active -= 1
            assert status == 200
            await asyncio.sleep(0)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return (time.perf_counter() - t) / len(bodies) * 1e6


async def batches(front, bodies):
    t = time.perf_counter()
    for b in bodies:
        status, _, _ = await front.answer("evaluations", "default", b)
        assert status == 200
    return (time.perf_counter() - t) / (len(bodies) * 64) * 1e6


async def main():
    w = workload.build()
    single = workload.single_bodies(N)
    batch = workload.batch_bodies(N // 64, 64)
    if True:
        tmp = TMP
        url = f"sqlite+aiosqlite:///{tmp}/b.db"
        fronts = {}
        stack = []
        for name, on in (("off", False), ("on", True)):
            s = load_settings(database_url=url, admin_token="t", var_dir=Path(tmp), policy_coalesce_enabled=on)
            app = create_app(s)
            inner = app.app
            cm = inner.router.lifespan_context(inner)
            await cm.__aenter__()
            stack.append(cm)
            fronts[name] = app
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fronts["off"]), base_url="http://p") as c:
            r = await c.post("/admin/stores/default/policies", json={"policies": w.policies}, headers=ADMIN)
            assert r.status_code in (200, 201), r.text
            r = await c.post("/admin/stores/default/entities", json=w.entities, headers=ADMIN)
            assert r.status_code == 200, r.text
        # both see the store (refresh) and warm up
        for _ in range(200):
            ok = True
            for f in fronts.values():
                st, _, _ = await f.answer("evaluation", "default", single[0])
                ok &= st == 200
            if ok:
                break
            await asyncio.sleep(0.05)
        for f in fronts.values():
            await singles(f, single[:500])
        if PROFILE:
            pr = cProfile.Profile()
            pr.enable()
            await singles(fronts[PROFILE], single)
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(25)
        res = {k: [] for k in ("off", "on", "batch")}
        for p in range(PASSES):
            for name in (("off", "on") if p % 2 == 0 else ("on", "off")):
                res[name].append(await singles(fronts[name], single))
            res["batch"].append(await batches(fronts["off"], batch))
        co = fronts["on"].state  # noqa
        print(json.dumps({k: [round(x, 1) for x in v] for k, v in res.items()}))
        print("best µs/decision: off %.1f on %.1f batch64 %.1f; on/off cost %.2f" % (
            min(res["off"]), min(res["on"]), min(res["batch"]), min(res["on"]) / min(res["off"])))
        for cm in stack:
            await cm.__aexit__(None, None, None)


from meshauth.db import migrate

with tempfile.TemporaryDirectory() as TMP:
    migrate(f"sqlite+aiosqlite:///{TMP}/b.db")
    if "--uvloop" in sys.argv:  # the served workers' loop
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
