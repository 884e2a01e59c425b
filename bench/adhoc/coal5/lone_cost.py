"""In-process cost of a lone single evaluation, coalescing off or on (stop 22, coal5).

argv: SETTING (off|on) N [--uvloop] [--small] [--queued] [--control]. The issue-3 store in a fresh SQLite file, one app built with
create_app (its lifespan running), N single evaluations sent one at a time straight to the decision
front's ``answer`` (what the RSGI path calls after reading the body), counted in ``Activity`` as the
front counts them, each after a loop turn and 0.6 ms after the last answer (past the coalescer's
idle gap of 0.5 ms: the lone path). Prints µs per request and, per request, the coalescer's inline
and batched counts and the tasks created (asyncio's task factory counted).
For instruction counts: run under callgrind with --control (zeroes the counters before the measured
requests and dumps them after, through callgrind_control).
"""
import asyncio, json, sys, tempfile, time
from pathlib import Path

import httpx

from meshauth.bench import policy_workload as workload
from meshauth.config_load import load_settings
from meshauth.policy.app import create_app

SETTING, N = sys.argv[1], int(sys.argv[2])
ADMIN = {"authorization": "Bearer t"}


async def main(tmp):
    loop = asyncio.get_running_loop()
    tasks = [0]
    base_factory = loop.get_task_factory()

    def factory(lp, coro, **kw):
        tasks[0] += 1
        return asyncio.Task(coro, loop=lp, **kw) if base_factory is None else base_factory(lp, coro, **kw)

    types = 2 if "--small" in sys.argv else workload.RESOURCE_TYPES  # --small: 40 policies (callgrind)
    w = workload.build(resource_types=types)
    single = workload.single_bodies(N + 200, resource_types=types)
    url = f"sqlite+aiosqlite:///{tmp}/b.db"
    s = load_settings(database_url=url, admin_token="t", var_dir=Path(tmp), policy_coalesce_enabled=SETTING == "on",
                       # --queued: a 50 ms idle gap, so that each request queues even under callgrind's slowdown
                       policy_coalesce_max_wait=0.05 if "--queued" in sys.argv else 0.0005)
    app = create_app(s)
    inner = app.app
    cm = inner.router.lifespan_context(inner)
    await cm.__aenter__()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c:
        r = await c.post("/admin/stores/default/policies", json={"policies": w.policies}, headers=ADMIN)
        assert r.status_code in (200, 201), r.text
        r = await c.post("/admin/stores/default/entities", json=w.entities, headers=ADMIN)
        assert r.status_code == 200, r.text
    for _ in range(200):
        st, _, _ = await app.answer("evaluation", "default", single[0])
        if st == 200:
            break
        await asyncio.sleep(0.05)
    act = app.activity
    co = app.state.api.coalescer

    async def run(bodies):
        spent = 0.0
        for body in bodies:
            if "--queued" not in sys.argv:  # --queued: right after the last answer, so it queues, alone
                time.sleep(0.0006)  # idle past the gap (blocking: no timer, no instructions under callgrind)
            await asyncio.sleep(0)
            t = time.perf_counter()
            if act is not None:
                act.active += 1
            try:
                status, _, _ = await app.answer("evaluation", "default", body)
            finally:
                if act is not None:
                    act.active -= 1
            spent += time.perf_counter() - t
            assert status == 200
        return spent

    await run(single[:200])
    control = "--control" in sys.argv  # under callgrind: count only the measured requests
    if control:
        import os, subprocess
        subprocess.run(["callgrind_control", "-z", str(os.getpid())], check=True, capture_output=True)
    loop.set_task_factory(factory)
    i0, b0 = (co.inline, co.batches) if co else (0, 0)
    spent = await run(single[200:])
    if control:
        subprocess.run(["callgrind_control", "-d", "measured", str(os.getpid())], check=True, capture_output=True)
    loop.set_task_factory(base_factory)
    out = {"setting": SETTING, "n": N, "us_per_request": spent / N * 1e6, "tasks_per_request": tasks[0] / N}
    if co:
        out.update(inline=co.inline - i0, batches=co.batches - b0)
    print(json.dumps(out))
    await cm.__aexit__(None, None, None)


from meshauth.db import migrate

with tempfile.TemporaryDirectory() as TMP:
    migrate(f"sqlite+aiosqlite:///{TMP}/b.db")
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main(TMP))
    else:
        asyncio.run(main(TMP))
