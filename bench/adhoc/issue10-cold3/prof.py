"""Cold-row profiling harness for cold3 (not committed). Usage: prof.py SECONDS [profile|plain] [extra env k=v...]"""
import json, secrets, subprocess, sys, tempfile, time, urllib.request, os
from pathlib import Path
from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.authz import ROUTES, _push_policy
from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.loadgen import SERVER_CORE, idle_poll, paced
from meshauth.bench.processes import free_port, process_tree, running, service_env
from meshauth.bench.valkey_here import local_valkey
from meshauth.config import Settings
from meshauth.db import migrate

seconds = int(sys.argv[1]); mode = sys.argv[2]
extra = dict(a.split("=", 1) for a in sys.argv[3:])
with tempfile.TemporaryDirectory(prefix="cold3-prof-") as tmp, local_valkey(int(SERVER_CORE)) as valkey:
    var = Path(tmp); (var / "routes.yaml").write_text(ROUTES)
    port, policy_port = free_port(), free_port()
    policy_url = f"http://127.0.0.1:{policy_port}"
    env = service_env(var, valkey.url, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()), MESHAUTH_POLICY_PORT=str(policy_port))
    penv = {**env, **extra}
    authz_env = {**env, "MESHAUTH_ROUTES_FILE": str(var / "routes.yaml"), "MESHAUTH_POLICY_URLS": f'["{policy_url}"]'}
    migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=valkey.url, var_dir=var).sqlalchemy_url)
    base = f"http://127.0.0.1:{port}"
    hot = f"{base}/ext_authz/documents/hot"
    with running(["-m", "meshauth", "serve", "policy", "--no-migrate"], penv, f"{policy_url}/healthz") as policy:
        _push_policy(policy_url)
        with running(["-m", "meshauth", "serve", "auth", "--no-migrate"], authz_env, f"{base}/healthz") as gate:
            _create_client(base)
            token = _post_form(f"{base}/oauth2/token", {"grant_type": "client_credentials"}, (CLIENT_ID, SECRET))
            headers = {"authorization": f"Bearer {token['access_token']}"}
            urllib.request.urlopen(urllib.request.Request(hot, headers=headers), timeout=5).close()
            # warm-up
            paced(base + "/", rate=3000, connections=30, seconds=3, headers=headers, distinct_prefix=f"/ext_authz/documents/w{secrets.token_hex(4)}-")
            ppids = process_tree(policy.pid)
            spy = None
            if mode == "profile":
                worker = ppids[-1]
                spy = subprocess.Popen(["taskset", "-c", "1", "/tmp/cold3-tools/bin/py-spy", "record", "--gil", "-p", str(worker), "-r", "250", "-f", "raw", "-o", f"/tmp/cold3/policy-{int(time.time())}.txt", "-d", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            def threads():
                out={}
                for pid in ppids:
                    for t in Path(f"/proc/{pid}/task").iterdir():
                        st=(t/"stat").read_text(); comm=st[st.index("(")+1:st.rindex(")")]; f=st[st.rindex(")")+2:].split()
                        out[f"{pid}/{t.name}/{comm}"]=int(f[11])+int(f[12])
                return out
            tb=threads()
            perf = subprocess.Popen(["taskset","-c","1","perf","record","-F","499","-p",str(ppids[-1]),"-o","/tmp/cold3/perf.data","--","sleep",str(seconds-2)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if mode=="perf" else None
            procs = {"gate": gate.pid, "policy": policy.pid, "valkey": valkey.pid}
            before = {n: tree_cpu(p) for n, p in procs.items()}
            lat = paced(base + "/", rate=3000, connections=30, seconds=seconds, headers=headers, distinct_prefix=f"/ext_authz/documents/c{secrets.token_hex(4)}-")
            ta=threads()
            for k in ta:
                d=ta[k]-tb.get(k,0)
                if d: print("thread", k, d, "ticks", round(1e4*d/max(1,lat.requests),1), "us/req")
            if perf: perf.wait()
            cpu = {n: round(1e6 * (tree_cpu(p) - before[n]) / max(1, lat.requests), 1) for n, p in procs.items()}
            with urllib.request.urlopen(f"{policy_url}/metrics", timeout=10) as r:
                (var / "policy_metrics.txt").write_bytes(r.read())
            print(json.dumps({"rate": lat.rate, "p50": lat.p50_ms, "p95": lat.p95_ms, "p99": lat.p99_ms, "non2xx": lat.non_2xx, "cpu": cpu}))
            import redis as _r
            for k,v in _r.Redis(port=valkey.port).info("commandstats").items(): print(k, v["calls"], v["usec_per_call"])
            if spy: spy.wait()
            subprocess.run(["taskset","-c","1","perf","record","-F","999","-g","-p",str(ppids[-1]),"-o","/tmp/cold3/perf.data","--","sleep","6"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if mode == "profile" and False else None
            os.system(f"grep -E '^meshauth_policy_(entity|engine|table|decisions)|^meshauth_http_request_duration_seconds_count' {var}/policy_metrics.txt | grep -v bucket | head -30")
