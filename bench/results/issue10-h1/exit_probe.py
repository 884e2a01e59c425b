import os, subprocess, sys, time, json
sys.path.insert(0, "/work/wt-h1")
from tests.served import free_port, ADMIN
from meshauth.local.health import wait_healthy
from meshauth.local.valkey import EmbeddedValkey
from pathlib import Path
vk = EmbeddedValkey(Path("/tmp/h1exit/valkey")); vk.start()
var = "/tmp/h1exit/var"; os.makedirs(var, exist_ok=True)
port = free_port()
env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_")}
env.update(MESHAUTH_VAR_DIR=var, MESHAUTH_DATABASE_URL=f"sqlite:///{var}/m.db", MESHAUTH_REDIS_URL=vk.url,
           MESHAUTH_ADMIN_TOKEN=ADMIN, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_GRPC_PORT=str(free_port()))
proc = subprocess.Popen([sys.executable, "-m", "meshauth", "serve", "auth", "--interface", "asgi"], env=env,
                        stdout=open(f"{var}/log", "wb"), stderr=subprocess.STDOUT)
wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, timeout=30, name="gate")
spy = None
time.sleep(1.0)
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
b = cpu(proc.pid); t0 = time.monotonic()
proc.terminate()
last = b
while True:
    try:
        st = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0]
        last = cpu(proc.pid)
    except OSError:
        break
    if st == "Z": break
    time.sleep(0.005)
print("exit wall", round(time.monotonic() - t0, 2), "main cpu", round(last - b, 2))
proc.wait()
vk.stop()
