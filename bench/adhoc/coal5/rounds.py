"""Coalescing variants served at once, measured in rotating order (stop 22, coal5).

Usage (tree root, under the bench lock):
  PYTHONPATH=$PWD/src python bench/adhoc/coal5/rounds.py ROUNDS SECONDS MODE[,MODE...] VARIANT...
MODE: fixed:RATE (the benchmark's open-loop driver) or c16 (wrk -c16 singles) or b64 (wrk -c8 64-item).
VARIANT: name or name@ENV=VAL+ENV2=VAL2 (e.g. on@MESHAUTH_POLICY_COALESCE_ENABLED=true,
base@PYTHONPATH=/tmp/base/src+MESHAUTH_POLICY_COALESCE_ENABLED=true). Every server is a fresh
`meshauth serve policy` over the issue-3 store on core 0 at nice -10; load from core 1.
Per variant and mode: CPU µs per request (schedstat of every thread of the tree), p50/p95/p99
(fixed) or req/s (c16), and from /metrics the inline count and the batch-size histogram deltas.
The order of the variants rotates by one each round (no variant always first).
"""
import json, os, re, statistics, sys, urllib.request
from pathlib import Path
from meshauth.bench import policy_coalesce, policy_coalesce_rounds as pr
from meshauth.bench import policy_harness as harness
from meshauth.bench.policy_harness import SERVERS, wrk, BATCH
from meshauth.bench.processes import free_port, running
import contextlib

def ns(pid):
    total = 0
    for p in pr._processes(pid):
        for t in Path(f"/proc/{p}/task").iterdir():
            try:
                total += int((t / "schedstat").read_text().split()[0])
            except OSError:
                pass
    return total

_INL = re.compile(r"^meshauth_policy_coalesced_inline_total (\S+)$", re.M)
_BUCKET = re.compile(r'^meshauth_policy_coalesced_batch_size_bucket\{le="([^"]+)"\} (\S+)$', re.M)
_COUNT = re.compile(r"^meshauth_policy_coalesced_batch_size_(count|sum) (\S+)$", re.M)

def scrape(base):
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    out = {"inline": sum(float(v) for v in _INL.findall(text))}
    for k, v in _COUNT.findall(text):
        out[k] = float(v)
    for le, v in _BUCKET.findall(text):
        out["le" + le] = float(v)
    return out

def main():
    rounds, seconds = int(sys.argv[1]), int(sys.argv[2])
    modes = sys.argv[3].split(",")
    variants = []
    for v in sys.argv[4:]:
        name, _, spec = v.partition("@")
        env = dict(kv.split("=", 1) for kv in spec.split("+")) if spec else {}
        variants.append((name, env))
    os.setpriority(os.PRIO_PROCESS, 0, pr.NICE)
    res = {}
    with policy_coalesce._prepared() as (var, files, script), contextlib.ExitStack() as stack:
        bases, pids = {}, {}
        for name, env in variants:
            port = free_port()
            bases[name] = f"http://127.0.0.1:{port}"
            pids[name] = stack.enter_context(running(SERVERS["rsgi"], harness.env(var, port, **env), bases[name] + "/healthz")).pid
            pr._prioritize(pids[name])
        for name in bases:
            wrk(bases[name], files["singles"], "/access/v1/evaluation", script, seconds=3, connections=16)
        order = [n for n, _ in variants]
        for r in range(rounds):
            rot = order[r % len(order):] + order[: r % len(order)]
            for mode in modes:
                for name in rot:
                    m0, c0 = scrape(bases[name]), ns(pids[name])
                    if mode.startswith("fixed"):
                        rate = int(mode.split(":")[1])
                        x = pr._driver(bases[name] + "/access/v1/evaluation", files["singles"], rate=rate, seconds=seconds, priority=True)
                        reqs = x["requests"]
                    elif mode == "idle":  # no load: the server's own CPU over the period (µs, "per request" = total)
                        import time as _t
                        _t.sleep(seconds)
                        x, reqs = {"requests_per_s": 0.0}, 1
                    elif mode == "c16":
                        x = wrk(bases[name], files["singles"], "/access/v1/evaluation", script, seconds=seconds, connections=16)
                        reqs = x["requests_per_s"] * seconds
                    else:
                        x = wrk(bases[name], files["batches"], "/access/v1/evaluations", script, seconds=seconds, connections=8)
                        reqs = x["requests_per_s"] * seconds
                        x["decisions_per_s"] = x["requests_per_s"] * BATCH
                    c1, m1 = ns(pids[name]), scrape(bases[name])
                    x["cpu_us"] = (c1 - c0) / 1e3 / max(reqs, 1)
                    x["load"] = os.getloadavg()[0]
                    x["m"] = {k: m1.get(k, 0) - m0.get(k, 0) for k in m1}
                    res.setdefault(mode, {}).setdefault(name, []).append(x)
                    d = x["m"]
                    extra = ""
                    if d.get("count") or d.get("inline"):
                        b = d.get("count", 0)
                        extra = f" inline={d.get('inline', 0):.0f} batches={b:.0f} mean={d.get('sum', 0) / b if b else 0:.2f} size1={d.get('le1.0', 0):.0f}"
                    if mode.startswith("fixed"):
                        print(f"r{r+1} {mode} {name:8s} load={x['load']:.1f} p50={x['p50_ms']:.3f} p95={x['p95_ms']:.3f} p99={x['p99_ms']:.3f} cpu={x['cpu_us']:.1f}{extra}", flush=True)
                    else:
                        rate = x.get("decisions_per_s", x["requests_per_s"])
                        print(f"r{r+1} {mode} {name:8s} load={x['load']:.1f} rate={rate:,.0f} cpu={x['cpu_us']:.1f}{extra}", flush=True)
    med = statistics.median
    for mode, per in res.items():
        for name, xs in per.items():
            if mode.startswith("fixed"):
                print(f"MEDIAN {mode} {name:8s} p50={med(x['p50_ms'] for x in xs):.3f} p95={med(x['p95_ms'] for x in xs):.3f} p99={med(x['p99_ms'] for x in xs):.3f} cpu={med(x['cpu_us'] for x in xs):.1f}")
            else:
                print(f"MEDIAN {mode} {name:8s} rate={med(x.get('decisions_per_s', x['requests_per_s']) for x in xs):,.0f} cpu={med(x['cpu_us'] for x in xs):.1f}")
    out = Path(os.environ.get("COAL5_OUT", "/tmp/coal5-rounds.json"))
    out.write_text(json.dumps(res, indent=1, default=str))

if __name__ == "__main__":
    main()
