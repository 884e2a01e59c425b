"""Served cost per AuthZEN call of the policy service, variants side by side (stop 21, policy4).

Usage (from the tree root, under the bench lock):
  PYTHONPATH=$PWD/src python bench/adhoc/policy4/served.py ROUNDS SECONDS MODE VARIANT...
MODE: paced:RATE:ITEMS (wrk paced.lua-style, 30 connections, distinct resources, ITEMS per call,
0 = single `evaluation`) or closed:CONN:ITEMS (wrk closed loop). VARIANT: a name, or name=exp1+exp2
(POLICY4_EXP for that server: mt, nows, rt2, flush, gc, noinst, ...), or name@ENV=VAL+ENV2=VAL2.
Each variant is its own `meshauth serve policy` on core 0 (own SQLite, the cold bench's scope-only
policy), one Valkey on core 0 for audit (as the cold bench), wrk on core 1. Per round, variants in
rotating order; per call: CPU µs per process and per thread (schedstat, ns), voluntary and
involuntary context switches per call (all threads), Valkey µs per call.
"""
import json, os, statistics, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
from meshauth.bench.processes import free_port, running, process_tree
from meshauth.bench.policy_harness import admin
from meshauth.bench.valkey_here import local_valkey

HERE = Path(__file__).parent
POLICY = '@id("bench-reads") permit(principal == Client::"bench", action == Action::"read", resource);'

def threads(pids):
    out = {}
    for pid in pids:
        for t in Path(f"/proc/{pid}/task").iterdir():
            try:
                st = (t / "stat").read_text(); comm = st[st.index("(") + 1:st.rindex(")")]
                run_ns = int((t / "schedstat").read_text().split()[0])
                status = (t / "status").read_text()
                vol = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
                inv = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
            except (OSError, IndexError, ValueError):
                continue
            out[(pid, int(t.name), comm)] = (run_ns, vol, inv)
    return out

def proc_ns(pid):
    return sum(int((t / "schedstat").read_text().split()[0]) for t in Path(f"/proc/{pid}/task").iterdir())

def wrk(port, mode, seconds):
    kind, a, items = mode.split(":")
    env = {**os.environ, "BENCH_ITEMS": items, "BENCH_PATH": "/access/v1/evaluation" if items == "0" else "/access/v1/evaluations"}
    if kind == "paced":
        conns = 30
        env["PACE_MEAN_MS"] = f"{conns * 1000 / int(a):.3f}"
    else:
        conns = int(a); env["BENCH_CLOSED"] = "1"
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", str(HERE / "paced_post.lua"), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env).stdout
    line = [l for l in out.splitlines() if l.startswith("PACED")]
    if not line:
        raise RuntimeError(out)
    return dict(kv.split("=") for kv in line[0].split()[1:])

def main():
    rounds, seconds, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    variants = []
    for v in sys.argv[4:]:
        name, env = v, {}
        if "=" in v and "@" not in v:
            name, exp = v.split("=", 1); env["POLICY4_EXP"] = exp.replace("+", ",")
        elif "@" in v:
            name, pairs = v.split("@", 1)
            env = dict(p.split("=", 1) for p in pairs.split("+"))
        variants.append((name, env))
    results = {name: [] for name, _ in variants}
    print(f"# {time.strftime('%H:%M:%S', time.gmtime())} UTC load {os.getloadavg()[0]:.1f} mode {mode} seconds {seconds}", flush=True)
    with tempfile.TemporaryDirectory(prefix="policy4-") as tmp, local_valkey(0) as valkey:
        import contextlib
        with contextlib.ExitStack() as stack:
            servers = []
            for name, extra in variants:
                var = Path(tmp) / name; var.mkdir()
                port = free_port()
                env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_") and k not in ("POLICY4_EXP",)}
                env.update(MESHAUTH_VAR_DIR=str(var), MESHAUTH_DATABASE_URL=f"sqlite:///{var / 'bench.db'}",
                           MESHAUTH_ADMIN_TOKEN="bench-admin-token", MESHAUTH_POLICY_PORT=str(port), MESHAUTH_REDIS_URL=valkey.url)
                env.update(extra)
                base = f"http://127.0.0.1:{port}"
                if name.startswith("wsgifloor"):
                    proc = stack.enter_context(running([str(HERE / "wsgi_floor.py"), str(port)], env, base + "/healthz"))
                elif name.startswith("floor"):
                    code = f"from meshauth.granian_server import serve; serve('meshauth.bench.policy_floor:create_app', host='127.0.0.1', port={port}, interface='rsgi')"
                    proc = stack.enter_context(running(["-c", code], env, base + "/healthz"))
                else:
                    proc = stack.enter_context(running(["-m", "meshauth", "serve", "policy"], env, base + "/healthz"))
                    admin(base, "POST", "/admin/stores/default/policies", json.dumps({"policies": POLICY, "activate": True}).encode())
                servers.append((name, port, proc))
            for name, port, proc in servers:  # warm-up
                wrk(port, mode, 2)
            for r in range(rounds):
                order = servers[r % len(servers):] + servers[:r % len(servers)]
                for name, port, proc in order:
                    pids = process_tree(proc.pid)
                    before = threads(pids); vk0 = proc_ns(valkey.pid); load = os.getloadavg()[0]
                    prof = None
                    if os.environ.get("PROF") == "perf" and r == 0:
                        os.makedirs("/tmp/policy4", exist_ok=True)
                        prof = subprocess.Popen(["taskset", "-c", "1", "perf", "record", "-F", "1999", "-g", "-p", str(pids[-1]), "-o", f"/tmp/policy4/perf-{name}.data", "--", "sleep", str(seconds - 1)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    if os.environ.get("PROF") == "spy" and r == 0:
                        os.makedirs("/tmp/policy4", exist_ok=True)
                        prof = subprocess.Popen(["taskset", "-c", "1", "/tmp/policy4-tools/bin/py-spy", "record", "--nonblocking", "--threads", "--gil", "-r", "997", "-f", "raw", "-p", str(pids[-1]), "-o", f"/tmp/policy4/spy-{name}.txt", "-d", str(seconds - 1)], stdout=open("/tmp/policy4/spy.log", "w"), stderr=subprocess.STDOUT)
                    res = wrk(port, mode, seconds)
                    if prof is not None:
                        prof.wait()
                    after = threads(pids); vk1 = proc_ns(valkey.pid)
                    n = int(res["n"])
                    per = {}
                    tot = vol = inv = 0
                    for k, (ns, v, i) in after.items():
                        b = before.get(k, (0, 0, 0))
                        d = ns - b[0]; tot += d; vol += v - b[1]; inv += i - b[2]
                        if d > 0.001 * n * 1000:
                            if k[0] != pids[-1]:
                                key = "parent"
                            elif k[1] == k[0]:
                                key = "loop"
                            else:
                                key = "t%d" % sorted(t for (p, t, _c) in after if p == k[0]).index(k[1])
                            per[key] = per.get(key, 0) + d / n / 1000
                    row = {"round": r + 1, "load": round(load, 1), "rps": float(res["rps"]), "p50": float(res["p50"]), "p95": float(res["p95"]), "p99": float(res["p99"]),
                           "errors": int(res["errors"]), "us_per_call": round(tot / n / 1000, 1), "vol_cs": round(vol / n, 2), "inv_cs": round(inv / n, 2),
                           "valkey_us": round((vk1 - vk0) / n / 1000, 1), "threads": {k: round(v, 1) for k, v in sorted(per.items(), key=lambda x: -x[1])}}
                    results[name].append(row)
                    print(name, json.dumps(row), flush=True)
    print("# medians")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("rps", "p50", "p95", "p99", "us_per_call", "vol_cs", "inv_cs", "valkey_us")}
        print(name, json.dumps(med))
    print(f"# end {time.strftime('%H:%M:%S', time.gmtime())} UTC load {os.getloadavg()[0]:.1f}")

main()
