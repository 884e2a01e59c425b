"""The benchmark's batched (micro-batched check()) mode against the real served policy service, with
the batch-size histogram (BATCH_SIZE) printed: mean checks per call. argv: rounds [policies]."""
import asyncio, sys
import uvloop
from meshauth.bench import client as bc
from meshauth.bench.client_setup import CONDITIONED, POLICIES, pin_client, policy_service
from meshauth.client._metrics import BATCH_SIZE

pin_client()
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
pol = CONDITIONED if len(sys.argv) > 2 and sys.argv[2] == "conditioned" else POLICIES
with policy_service(policies=pol) as served:
    for r in range(rounds):
        series = BATCH_SIZE.series.get(())
        c0, s0 = (sum(series.buckets), series.sum) if series else (0, 0)
        out = uvloop.run(bc.saturate(served.url, mode="batched", seconds=4, concurrency=64, pid=served.pid))
        series = BATCH_SIZE.series.get(())
        print(f"client {out['client_us_per_decision']:.2f} + service {out['server_us_per_decision']:.2f} us; {out['decisions_per_s']:.0f}/s; mean batch {(series.sum - s0)/(sum(series.buckets) - c0):.1f}", flush=True)
