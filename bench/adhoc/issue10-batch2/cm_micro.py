import asyncio, time, sys, msgspec
import uvloop
from meshauth.client import PolicyClient, Check, Response, BatchConfig
N=64
resp = msgspec.json.encode({"evaluations":[{"decision":True,"context":{"revision":1,"entities_version":3,"policies":["view-all"],"errors":[]}}]*N})
class T:
    async def post(self, url, body, headers, *, timeout):
        return Response(200, resp)
    async def aclose(self): pass
async def main():
    c = PolicyClient(["http://x"], transport=T(), cache=None, singleflight=False, retry=None, breaker=None, batching=BatchConfig(max_batch=N))
    rounds=3000
    checks_all=[[Check({"type":"User","id":f"u{r}-{k}"},"view",{"type":"Doc","id":f"d{k}"}) for k in range(N)] for r in range(50)]
    await c.check_many(checks_all[0])
    t0=time.process_time()
    for r in range(rounds):
        await c.check_many(checks_all[r%50])
    dt=time.process_time()-t0
    print(f"{dt/rounds/N*1e6:.2f} us per decision (client, no HTTP, prebuilt checks)")
    if len(sys.argv)>1:
        import cProfile, pstats
        pr=cProfile.Profile(); pr.enable()
        for r in range(1000): await c.check_many(checks_all[r%50])
        pr.disable(); pstats.Stats(pr).sort_stats('tottime').print_stats(25)
uvloop.run(main())
