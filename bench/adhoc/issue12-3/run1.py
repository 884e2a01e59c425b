"""Issue 12 (audit3) scratch: one paced run per mode of the audit_gate service with a PYTHONPATH prefix
(a sitecustomize probe or variant), printing latency and the probe's per-process stats.

    flock /tmp/meshauth-bench.lock python bench/adhoc/issue12-3/run1.py SECONDS SITEDIR MODE[=K:V,...]...
"""

import glob
import json
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

from meshauth.bench import audit_gate
from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.loadgen import CLIENT_CORE, idle_poll, paced
from meshauth.bench.processes import free_port, running
from meshauth.bench.valkey_here import local_valkey
from meshauth.config import Settings
from meshauth.db import migrate

seconds = int(sys.argv[1])
site = sys.argv[2]
src = str(Path("src").resolve())
with tempfile.TemporaryDirectory() as tmp, local_valkey(int(CLIENT_CORE)) as valkey:
    var = Path(tmp)
    port = free_port()
    env0 = audit_gate.service_env(var, valkey.url, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()))
    migrate(Settings(database_url=env0["MESHAUTH_DATABASE_URL"], redis_url=valkey.url, var_dir=var).sqlalchemy_url)
    base = f"http://127.0.0.1:{port}"
    gate = f"{base}/ext_authz/orders/42"
    headers = {}
    for arg in sys.argv[3:]:
        mode, _, spec = arg.partition("=")
        env = {**env0, **audit_gate.MODES.get(mode, audit_gate.ON)}
        if spec:
            env.update(dict(kv.split(":", 1) for kv in spec.split(",")))
        if site != "-":
            env["PYTHONPATH"] = f"{Path(site).resolve()}:{env.get('PYTHONPATH', src)}"
        shutil.rmtree("/tmp/audit3-probe", ignore_errors=True)
        with running(audit_gate.SERVE, env, f"{base}/healthz") as proc:
            if not headers:
                _create_client(base)
                token = _post_form(f"{base}/oauth2/token", {"grant_type": "client_credentials"}, (CLIENT_ID, SECRET))
                headers = {"authorization": f"Bearer {token['access_token']}"}
            urllib.request.urlopen(urllib.request.Request(gate, headers=headers), timeout=5).close()
            cpu0 = tree_cpu(proc.pid)
            with idle_poll():
                r = paced(gate, rate=3000, connections=30, seconds=seconds, headers=headers)
            cpu = (tree_cpu(proc.pid) - cpu0) / max(r.requests, 1) * 1e6
        print(f"{arg}: {r.rate:.0f} req/s p50 {r.p50_ms:.2f} p95 {r.p95_ms:.2f} p99 {r.p99_ms:.2f} cpu {cpu:.1f} us/req load {os.getloadavg()[0]:.1f}")
        for path in glob.glob("/tmp/audit3-probe/*.json"):
            stats = json.load(open(path))
            if stats:
                print("   ", Path(path).stem, {k: f"n={v[0]} tot={v[1]*1e3:.1f}ms max={v[2]*1e6:.0f}us >200us={v[3]}" for k, v in stats.items()})
