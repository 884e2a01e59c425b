"""Client CPU per decision of 64 concurrent check() callers against an in-process transport that
answers a prebuilt response after DELAY s (batches fill as against a busy service); from batch3's
check_micro.py. argv: [sf] [cache] [prof]: single-flight on / L1 on (no L2) / cProfile."""
import asyncio, sys, time
import msgspec, uvloop
from meshauth.client import PolicyClient, Response, BatchConfig, CacheConfig

DELAY = 0.0015
ITEM = {"decision": True, "context": {"revision": 1, "entities_version": 3, "policies": ["view-all"], "errors": []}}
RESP = {n: msgspec.json.encode({"evaluations": [ITEM] * n}) for n in range(2, 65)}
ONE = msgspec.json.encode(ITEM)
sizes = []
args = set(sys.argv[1:])


class T:
    async def post(self, url, body, headers, *, timeout):
        n = body.count(b'"subject"')
        sizes.append(n)
        await asyncio.sleep(DELAY)
        return Response(200, ONE if n == 1 else RESP[n])

    async def aclose(self):
        pass


async def run(seconds, prof=False):
    c = PolicyClient(["http://x"], transport=T(), cache=CacheConfig() if "cache" in args else None,
                     singleflight="sf" in args, retry=None, breaker=None, warming=None,
                     batching=BatchConfig(max_batch=64, max_wait=0.002))
    n = 0; stop = False
    async def worker(w):
        nonlocal n
        i = 0
        while not stop:
            d = await c.check({"type": "User", "id": f"u{w}-{i}"}, "view", {"type": "Doc", "id": f"d{i}"})
            assert d.error is None, d
            n += 1; i += 1
    tasks = [asyncio.ensure_future(worker(w)) for w in range(64)]
    await asyncio.sleep(0.3)
    n0 = n; sizes.clear()
    if prof:
        import cProfile, pstats
        pr = cProfile.Profile(); pr.enable()
    c0 = time.process_time()
    await asyncio.sleep(seconds)
    c1 = time.process_time(); n1 = n
    if prof:
        pr.disable()
    stop = True
    await asyncio.gather(*tasks)
    await c.aclose()
    print(f"{(c1-c0)/(n1-n0)*1e6:.2f} us client CPU per decision; {n1-n0} decisions; mean batch {sum(sizes)/max(1,len(sizes)):.1f}")
    if prof:
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)

uvloop.run(run(3.0, "prof" in args))
