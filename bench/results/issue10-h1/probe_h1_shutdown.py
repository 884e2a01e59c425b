"""PROBE (not committed): the slow-service scenario, recording the slowest answer and the gate's exit time
after SIGTERM; on a hang > 3 s, py-spy dumps of the gate's process tree into /tmp/h1probe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshauth.local.health import wait_healthy
from tests.auth.authz_processes import ROUTES, Load, client_token
from tests.client.served import DECISION_TOKEN
from tests.served import ADMIN, Served, free_port

TRANSPORT = os.environ.get("PROBE_TRANSPORT", "h1")
OUT = Path("/tmp/h1probe")


def tree(pid: int) -> list[int]:
    out = [pid]
    for p in list(out):
        with contextlib.suppress(OSError):
            for t in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    out += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
    return out


def cpu(pid: int) -> tuple[float, str]:
    """(utime + stime seconds, state) of ``pid`` itself (a zombie keeps them)."""
    with contextlib.suppress(OSError):
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"), f[0]
    return -1.0, "?"


async def watch_exit(pid: int) -> tuple[float, float]:
    """Seconds until ``pid`` is a zombie and the CPU it used meanwhile (its own, not the worker's)."""
    before, _ = cpu(pid)
    t0 = time.monotonic()
    last = before
    while time.monotonic() - t0 < 60:
        used, state = cpu(pid)
        if state in ("Z", "?"):
            break
        last = used
        await asyncio.sleep(0.01)
    used, _ = cpu(pid)
    return time.monotonic() - t0, (used if used >= 0 else last) - before


def alltree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += [c for c in tree(p)[1:] if c not in seen]
    return seen


@pytest.mark.parametrize("run", range(int(os.environ.get("PROBE_RUNS", "1"))))
async def test_probe(tmp_path: Path, valkey_url: str, run: int) -> None:
    writers: set[asyncio.StreamWriter] = set()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                await asyncio.sleep(2.0)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    var = tmp_path / "gate"
    var.mkdir()
    (var / "routes.yaml").write_text(ROUTES)
    port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_")}
    env.update(
        MESHAUTH_VAR_DIR=str(var), MESHAUTH_DATABASE_URL=f"sqlite:///{var}/m.db", MESHAUTH_REDIS_URL=valkey_url,
        MESHAUTH_ADMIN_TOKEN=ADMIN, MESHAUTH_AUTH_PORT=str(port), MESHAUTH_POLICY_PORT=str(port),
        MESHAUTH_GRPC_PORT=str(grpc_port), MESHAUTH_ARGON2_TIME_COST="1", MESHAUTH_ARGON2_MEMORY_KIB="8",
        MESHAUTH_ROUTES_FILE=str(var / "routes.yaml"), MESHAUTH_POLICY_URLS=json.dumps([url]),
        MESHAUTH_POLICY_DECISION_TOKEN=DECISION_TOKEN, MESHAUTH_POLICY_TRANSPORT=TRANSPORT,
    )
    output = var / "auth.log"
    with output.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "meshauth", "serve", "auth", "--interface", "asgi"],
                                env=env, stdout=err, stderr=subprocess.STDOUT)
    gate = Served("auth", "asgi", port, grpc_port, output)
    slowest = -1.0
    exit_s = -1.0
    try:
        wait_healthy(gate.url + "/healthz", proc, timeout=30, name="gate")
        load = Load(gate, await asyncio.to_thread(client_token, gate))
        running = asyncio.create_task(load.run(("uncached", "hot", "secret"), workers=8))
        await asyncio.sleep(2.0)
        load.stop()
        await running
        slowest = max(o.seconds for o in load.outcomes)
        bad = [o for o in load.outcomes if (o.status, o.reason) != (503, "policy_unavailable")]
    finally:
        pids = alltree(proc.pid)
        t0 = time.monotonic()
        proc.terminate()
        watcher = asyncio.create_task(watch_exit(proc.pid))
        try:
            await asyncio.to_thread(proc.wait, 3)
        except subprocess.TimeoutExpired:
            stamp = time.strftime("%H%M%S")
            with (OUT / f"hang-{TRANSPORT}-{stamp}.txt").open("w") as f:
                f.write(f"pids before: {pids}\nnow: {alltree(proc.pid)}\n")
                for i in range(3):
                    for p in alltree(proc.pid):
                        r = subprocess.run(["/tmp/h1-tools/bin/py-spy", "dump", "--native", "--pid", str(p)],
                                           capture_output=True, text=True, timeout=30)
                        f.write(f"==== {i} {time.monotonic() - t0:.2f} {p}\n{r.stdout}\n{r.stderr}\n")
                        with contextlib.suppress(OSError):
                            f.write(Path(f"/proc/{p}/status").read_text() + Path(f"/proc/{p}/wchan").read_text() + "\n")
                    time.sleep(1)
                f.write("==== log\n" + output.read_text(errors="replace"))
            await asyncio.to_thread(proc.wait, 30)
        exit_s = time.monotonic() - t0
        zombie_s, main_cpu = await watcher
        server.close()
        for writer in writers:
            writer.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
        with (OUT / "runs.txt").open("a") as f:
            load_avg = os.getloadavg()[0]
            f.write(f"{time.strftime('%H:%M:%S')} {TRANSPORT} load={load_avg:.1f} slowest={slowest:.3f} exit={exit_s:.2f} main_cpu_during_exit={main_cpu:.2f}\n")
    assert not bad, bad[:3]
    assert slowest <= 0.5, slowest
    assert exit_s < 3
