"""Issue 12 (audit2) scratch: where the audited gate's extra CPU goes, by py-spy on the served worker.

The audit_gate benchmark's service (warm ext_authz, asgi, pinned to core 0, private Valkey beside wrk on
core 1) under paced wrk at RATE req/s; py-spy samples the granian worker (``--nonblocking``, 250 Hz) for
the run; printed: the share of samples whose stack holds auditing frames, by frame.

    flock /tmp/meshauth-bench.lock python bench/adhoc/issue12-2/spy.py [MODE=on] [SECONDS=10] [RATE=3000]
"""

import collections
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from meshauth.bench import audit_gate
from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.loadgen import CLIENT_CORE, idle_poll, paced
from meshauth.bench.processes import free_port, process_tree, running, service_env
from meshauth.config import Settings
from meshauth.db import migrate
from meshauth.bench.valkey_here import local_valkey

mode = sys.argv[1] if len(sys.argv) > 1 else "on"
seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
rate = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
spy = str(Path(sys.executable).with_name("py-spy"))
AUDIT = ("bus/", "audit_hooks", "msgspec", "redis/", "_resp.py", "Producer", "AuthAudit")

with tempfile.TemporaryDirectory() as tmp, local_valkey(int(CLIENT_CORE)) as valkey:
    var = Path(tmp)
    redis_url = valkey.url
    port = free_port()
    env = audit_gate.service_env(var, redis_url, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()))
    env.update(audit_gate.MODES[mode])
    migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=var).sqlalchemy_url)
    base = f"http://127.0.0.1:{port}"
    gate = f"{base}/ext_authz/orders/42"
    with running(audit_gate.SERVE, env, f"{base}/healthz") as proc:
        _create_client(base)
        token = _post_form(f"{base}/oauth2/token", {"grant_type": "client_credentials"}, (CLIENT_ID, SECRET))
        headers = {"authorization": f"Bearer {token['access_token']}"}
        urllib.request.urlopen(urllib.request.Request(gate, headers=headers), timeout=5).close()
        worker = process_tree(proc.pid)[-1]
        out = var / "spy.txt"
        rec = subprocess.Popen(
            [spy, "record", "--nonblocking", "-r", "500", "-d", str(seconds), "--format", "raw", "-o", str(out),
             "-p", str(worker)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with idle_poll():
            result = paced(gate, rate=rate, connections=30, seconds=seconds, headers=headers)
        rec.wait()
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        print("\n".join(m for m in metrics.splitlines() if m.startswith("meshauth_bus_")))
    total = 0
    audit_n = 0
    by_frame: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        k = int(n)
        total += k
        frames = stack.split(";")
        leaf[frames[-1]] += k
        hit = [f for f in frames if any(a in f for a in AUDIT)]
        if hit:
            audit_n += k
            by_frame[hit[0]] += k
    print(f"mode {mode}: {result.rate:.0f} req/s p50 {result.p50_ms:.2f} p95 {result.p95_ms:.2f} p99 {result.p99_ms:.2f}")
    print(f"samples {total}; with auditing frames {audit_n} ({100 * audit_n / max(total, 1):.1f} %)")
    for f, k in by_frame.most_common(15):
        print(f"  {100 * k / total:5.2f} %  {f}")
    stacks: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        stacks[";".join(f.split(" (")[0] for f in stack.split(";")[-6:])] += int(n)
    print("top stacks (last 6 frames):")
    for f, k in stacks.most_common(12):
        print(f"  {100 * k / total:5.2f} %  {f}")
    print("top leaves:")
    for f, k in leaf.most_common(25):
        print(f"  {100 * k / total:5.2f} %  {f}")
