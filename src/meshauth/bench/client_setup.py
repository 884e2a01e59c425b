"""What the client benchmarks share: a policy service (and optionally a Valkey) on the server core,
this process on the client core, a Zipf sampler, and CPU accounting from /proc."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import os
import random
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshauth.bench.loadgen import CLIENT_CORE, SERVER_CORE
from meshauth.bench.processes import free_port, running
from meshauth.bench.valkey_here import local_valkey
from meshauth.client import Check, PolicyClient

ADMIN = "bench-admin-token"
POLICIES = """
@id("view-all") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);
"""
# The same policies with a condition that always holds: the engine must decide every request (a
# scope-only set is answered from its table: policy/scope_table.py).
CONDITIONED = POLICIES.replace(");", ") when { true };")
_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (granian serves from child processes)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def pin_client() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(CLIENT_CORE)})


def admin(url: str, method: str, path: str, body: object) -> dict[str, Any]:
    req = urllib.request.Request(  # noqa: S310 - loopback, a URL we built
        url + path,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def push(url: str, text: str) -> dict[str, Any]:
    return admin(url, "POST", "/admin/stores/default/policies", {"policies": text, "activate": True})


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    redis_url: str | None


@contextlib.contextmanager
def policy_service(*, redis: bool = False, policies: str = POLICIES, **env_extra: str) -> Iterator[Served]:
    """A policy service (one worker, SQLite) on the server core, with a private Valkey if asked
    (also on the server core, as the service and Valkey share one core in the issue's setup)."""
    with contextlib.ExitStack() as stack:
        redis_url = None
        if redis:
            valkey = stack.enter_context(local_valkey(int(SERVER_CORE)))
            redis_url = valkey.url
        var = stack.enter_context(tempfile.TemporaryDirectory(prefix="meshauth-bench-"))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_") and k != "REDIS_URL"}
        env.update(
            MESHAUTH_VAR_DIR=var,
            MESHAUTH_DATABASE_URL=f"sqlite:///{var}/bench.db",
            MESHAUTH_ADMIN_TOKEN=ADMIN,
            MESHAUTH_POLICY_PORT=str(port),
            **env_extra,
        )
        if redis_url:
            env["MESHAUTH_REDIS_URL"] = redis_url
        url = f"http://127.0.0.1:{port}"
        proc = stack.enter_context(running(["-m", "meshauth.policy.server"], env, url + "/healthz"))
        push(url, policies)
        yield Served(url, proc.pid, redis_url)


class Zipf:
    """Ranks 0..n-1 drawn with P(k) ∝ 1/(k+1)^s (bisect over the cumulative weights)."""

    def __init__(self, n: int, s: float, seed: int = 7) -> None:
        self._cum = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))
        self._rng = random.Random(seed)

    def draw(self) -> int:
        return bisect.bisect_left(self._cum, self._rng.random() * self._cum[-1])


def pair(k: int) -> tuple[dict[str, str], dict[str, str]]:
    """The k-th (subject, resource) pair: 1,000 users × documents."""
    return {"type": "User", "id": f"u{k % 1000}"}, {"type": "Doc", "id": f"d{k}"}


@dataclass(frozen=True, slots=True)
class Saturated:
    """What ``keep_in_flight`` measured: decisions answered, errors, wall time and CPU of client and service."""

    decisions: int
    errors: int
    wall: float
    client_cpu: float
    server_cpu: float


async def keep_in_flight(
    client: PolicyClient, pid: int, *, workers: int, seconds: float, warm: int, distinct_resources: bool
) -> Saturated:
    """Keep ``workers`` checks in flight for ``seconds``, each a question never asked before (a new
    subject, and a new resource if ``distinct_resources``), after ``warm`` checks that open the
    connections; CPU of this process and of the service's process tree (``pid``) is measured around it."""
    decisions = errors = 0
    stop = False

    async def worker(w: int) -> None:
        nonlocal decisions, errors
        i = 0
        while not stop:
            resource = f"d{i}" if distinct_resources else "d"
            d = await client.check({"type": "User", "id": f"u{w}-{i}"}, "view", {"type": "Doc", "id": resource})
            decisions += 1
            errors += d.error is not None
            i += 1

    await asyncio.gather(
        *(client.check({"type": "User", "id": f"w{i}"}, "view", {"type": "Doc", "id": "d"}) for i in range(warm))
    )
    c0, s0, t0 = time.process_time(), tree_cpu(pid), time.perf_counter()
    tasks = [asyncio.ensure_future(worker(w)) for w in range(workers)]
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*tasks)
    c1, s1, t1 = time.process_time(), tree_cpu(pid), time.perf_counter()
    return Saturated(decisions, errors, t1 - t0, c1 - c0, s1 - s0)


async def keep_batches_in_flight(
    client: PolicyClient, pid: int, *, callers: int, size: int, seconds: float, warm: int
) -> Saturated:
    """As :func:`keep_in_flight`, with ``callers`` each asking ``check_many`` of ``size`` questions
    never asked before (a new subject and resource per question), one batch after another."""
    decisions = errors = 0
    stop = False

    async def caller(w: int) -> None:
        nonlocal decisions, errors
        i = 0
        while not stop:
            got = await client.check_many(
                [
                    Check({"type": "User", "id": f"u{w}-{k}"}, "view", {"type": "Doc", "id": f"d{k}"})
                    for k in range(i, i + size)
                ]
            )
            decisions += len(got)
            errors += sum(d.error is not None for d in got)
            i += size

    await client.check_many(
        [Check({"type": "User", "id": f"w{i}"}, "view", {"type": "Doc", "id": "d"}) for i in range(warm)]
    )
    c0, s0, t0 = time.process_time(), tree_cpu(pid), time.perf_counter()
    tasks = [asyncio.ensure_future(caller(w)) for w in range(callers)]
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*tasks)
    c1, s1, t1 = time.process_time(), tree_cpu(pid), time.perf_counter()
    return Saturated(decisions, errors, t1 - t0, c1 - c0, s1 - s0)
