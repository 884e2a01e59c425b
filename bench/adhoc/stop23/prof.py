# stop 24: POLICY_SERVER=fake (bench/adhoc/stop24/fakepdp.py: the serving floor as policy service); SPY_TARGET=policy spies on the policy service's worker; SPY_NONBLOCKING=1 samples without pausing it
# stop 23: adds the gate's call-latency histogram (evaluations, ok) to the output
"""Cold-row harness for client4 (stop 21), from cold3's prof.py: the bench's cold row alone (Valkey,
policy service, gate on core 0; 3 s warm-up; paced 3,000 req/s from core 1 over 30 connections).

Usage: prof.py SECONDS MODE [idle] [G:ENV=VALUE ...] [P:ENV=VALUE ...]
MODE: plain | spy (py-spy record --gil on the gate's worker, raw output to /tmp/client4/gate-*.txt).
idle: the bench's idle-poll spinners (nice-19 busy loops on both cores) during the measured run.
G:/P: environment for the gate / the policy service only. Prints one JSON line: achieved rate, p50/p95/p99,
non-2xx, CPU µs per request per process, and the gate's checks per policy call (batch size histogram)."""
import json, os, re, secrets, subprocess, sys, tempfile, time, urllib.request
from contextlib import nullcontext
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
rate = int(os.environ.get("RATE", "3000"))  # offered req/s of the measured run
idle = "idle" in sys.argv[3:]
genv = dict(a[2:].split("=", 1) for a in sys.argv[3:] if a.startswith("G:"))
pxenv = dict(a[2:].split("=", 1) for a in sys.argv[3:] if a.startswith("P:"))


def batch_stats(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    tot = {}
    for m in re.finditer(r'^meshauth_client_call_seconds_bucket\{([^}]*)\} (\S+)$', text, re.M):
        if 'outcome="ok"' in m.group(1) and 'endpoint="evaluations"' in m.group(1):
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            tot["call_le_" + le] = tot.get("call_le_" + le, 0) + float(m.group(2))
    for name in ("meshauth_client_batch_size_sum", "meshauth_client_batch_size_count"):
        tot[name] = sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))
    return tot


with tempfile.TemporaryDirectory(prefix="client4-prof-") as tmp, local_valkey(int(SERVER_CORE)) as valkey:
    var = Path(tmp); (var / "routes.yaml").write_text(ROUTES)
    port, policy_port = free_port(), free_port()
    policy_url = f"http://127.0.0.1:{policy_port}"
    env = service_env(var, valkey.url, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()), MESHAUTH_POLICY_PORT=str(policy_port))
    penv = {**env, **pxenv}
    authz_env = {**env, "MESHAUTH_ROUTES_FILE": str(var / "routes.yaml"), "MESHAUTH_POLICY_URLS": f'["{policy_url}"]', **genv}
    migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=valkey.url, var_dir=var).sqlalchemy_url)
    base = f"http://127.0.0.1:{port}"
    hot = f"{base}/ext_authz/documents/hot"
    def uv(app, p):  # POLICY_SERVER / GATE_SERVER=uvicorn: that service under uvicorn (uvloop, httptools) instead
        return ["-m", "uvicorn", "--factory", app, "--host", "127.0.0.1", "--port", str(p), "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    fake = ("import sys; sys.path.insert(0, 'bench/adhoc/stop24'); from meshauth.granian_server import serve;"
            f" serve('fakepdp:create_app', host='127.0.0.1', port={policy_port}, interface='rsgi')")
    pargs = ["-c", fake] if os.environ.get("POLICY_SERVER") == "fake" else uv("meshauth.policy.app:create_app", policy_port) if os.environ.get("POLICY_SERVER") == "uvicorn" else ["-m", "meshauth", "serve", "policy", "--no-migrate"]
    gargs = uv("meshauth.auth.app:create_app", port) if os.environ.get("GATE_SERVER") == "uvicorn" else ["-m", "meshauth", "serve", "auth", "--no-migrate"]
    with running(pargs, penv, f"{policy_url}/healthz") as policy:
        _push_policy(policy_url)
        with running(gargs, authz_env, f"{base}/healthz") as gate:
            _create_client(base)
            token = _post_form(f"{base}/oauth2/token", {"grant_type": "client_credentials"}, (CLIENT_ID, SECRET))
            headers = {"authorization": f"Bearer {token['access_token']}"}
            urllib.request.urlopen(urllib.request.Request(hot, headers=headers), timeout=5).close()
            paced(base + "/", rate=3000, connections=30, seconds=3, headers=headers, distinct_prefix=f"/ext_authz/documents/w{secrets.token_hex(4)}-")
            gpids = process_tree(gate.pid)
            spy_pid = process_tree(policy.pid)[-1] if os.environ.get("SPY_TARGET") == "policy" else gpids[-1]
            spy_extra = ["--nonblocking"] if os.environ.get("SPY_NONBLOCKING") else []
            spy = None
            if os.environ.get("NICE_POLICY"):  # stop 24: the policy service's (and Valkey's) threads at this nice
                for q in [*process_tree(policy.pid), valkey.pid]:
                    for t in os.listdir(f"/proc/{q}/task"):
                        os.setpriority(os.PRIO_PROCESS, int(t), int(os.environ["NICE_POLICY"]))
            if mode == "spy":
                Path("/tmp/client4").mkdir(exist_ok=True)
                spy = subprocess.Popen(["taskset", "-c", "1", "py-spy", "record", "--gil", *spy_extra, "-p", str(spy_pid), "-r", "250", "-f", "raw", "-o", f"/tmp/client4/{os.environ.get('SPY_TARGET', 'gate')}-{int(time.time())}.txt", "-d", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            b0 = batch_stats(f"{base}/metrics")
            procs = {"gate": gate.pid, "policy": policy.pid, "valkey": valkey.pid}
            before = {n: tree_cpu(p) for n, p in procs.items()}
            def rss(pid):
                return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1])
            rss0 = rss(gpids[-1])
            stopper = None
            if os.environ.get("STOP_POLICY"):  # "AT,FOR": SIGSTOP the policy service AT s into the run for FOR s
                import signal, threading
                at, dur = (float(x) for x in os.environ["STOP_POLICY"].split(","))
                ppids = process_tree(policy.pid)
                def _stop():
                    time.sleep(at); [os.kill(q, signal.SIGSTOP) for q in ppids]
                    time.sleep(dur); [os.kill(q, signal.SIGCONT) for q in ppids]
                stopper = threading.Thread(target=_stop, daemon=True); stopper.start()
                timeline = []
                def _poll():  # every 0.5 s: breaker state, deny fallbacks, checks answered by the service
                    t0 = time.time()
                    while time.time() - t0 < seconds + 2:
                        try:
                            text = urllib.request.urlopen(f"{base}/metrics", timeout=2).read().decode()
                        except Exception:
                            text = ""
                        def val(rx):
                            return sum(float(m.group(1)) for m in re.finditer(rx, text, re.M))
                        timeline.append((round(time.time() - t0, 1), val(r'^meshauth_client_breaker_state\{[^}]*\} (\S+)$'),
                                         val(r'^meshauth_client_fallbacks_total\{[^}]*kind="deny"[^}]*\} (\S+)$'),
                                         val(r'^meshauth_client_checks_total\{[^}]*source="service"[^}]*\} (\S+)$')))
                        time.sleep(0.5)
                threading.Thread(target=_poll, daemon=True).start()
            perf = None
            if os.environ.get("PERF"):  # stop 24: perf record of core 0 over the measured run (PERF=path of the data file)
                perf = subprocess.Popen(["taskset", "-c", "1", "perf", "record", "-C", "0", "-F", "2000", "-o", os.environ["PERF"], "--", "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with idle_poll() if idle else nullcontext():
                lat = paced(base + "/", rate=rate, connections=30, seconds=seconds, headers=headers, distinct_prefix=f"/ext_authz/documents/c{secrets.token_hex(4)}-")
            cpu = {n: round(1e6 * (tree_cpu(p) - before[n]) / max(1, lat.requests), 1) for n, p in procs.items()}
            b1 = batch_stats(f"{base}/metrics")
            rss1 = rss(gpids[-1])
            if os.environ.get("STOP_POLICY"):
                time.sleep(2.5)
                print("timeline (s, breaker state, deny fallbacks, service answers):", timeline)
                text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
                print("\n".join(l for l in text.splitlines() if l.startswith(("meshauth_http_request_seconds_count", "meshauth_client_checks_total", "meshauth_client_fallbacks_total", "meshauth_gate"))))
            if spy: spy.wait()
            if perf: perf.wait()
            n = b1["meshauth_client_batch_size_count"] - b0["meshauth_client_batch_size_count"]
            per = (b1["meshauth_client_batch_size_sum"] - b0["meshauth_client_batch_size_sum"]) / max(1, n)
            hist = {k: int(b1[k] - b0.get(k, 0)) for k in b1 if k.startswith("call_le_")}
            print(json.dumps({"gate_rss_kib": [rss0, rss1], "calls_hist": hist, "rate": lat.rate, "p50": lat.p50_ms, "p95": lat.p95_ms, "p99": lat.p99_ms, "non2xx": lat.non_2xx, "cpu": cpu, "core0": round(sum(cpu.values()), 1), "checks_per_call": round(per, 2), "calls": int(n)}))
