"""The Phase 1 topology on one machine: `meshauth up --auth-replicas 5 --policy-replicas 3` starts it
with one command; the service client balances across the policy replicas, keeps deciding correctly
when one is killed under load, and steers away from one that is made slow."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

import meshauth.client
from meshauth.client import AiohttpTransport, BatchConfig, PolicyClient, Response
from tests.local.conftest import Topology, decides

CONCURRENCY = 16


def test_one_command_starts_five_auth_and_three_policy_replicas(topology: Topology) -> None:
    """Every auth replica is ready (HTTP and gRPC ports), every policy replica healthy, and each auth
    replica was given all three policy replicas to balance across."""
    for port in topology.auth_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            assert resp.status == 200
        auth = topology.service("auth", port)
        urls = json.loads(auth.environ()["MESHAUTH_POLICY_URLS"])
        assert urls == topology.policy_urls
    for url in topology.policy_urls:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
            assert resp.status == 200
    text = topology.output.read_text()
    assert "(5 replicas)" in text and "(3 replicas)" in text


@dataclass
class Outcome:
    at: float
    latency: float
    subject: str
    decision: bool
    error: str | None


class CountingTransport:
    """The client's own aiohttp transport, counting the calls sent to each replica."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.calls: Counter[str] = Counter()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response:
        self.calls[url.split("/stores/", 1)[0]] += 1
        return await self.inner.post(url, body, headers, timeout=timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _load(client: PolicyClient, seconds: float, at_half: object = None) -> list[Outcome]:
    """CONCURRENCY callers asking alternately for alice (allowed) and bob (denied) for ``seconds``."""
    outcomes: list[Outcome] = []
    start = time.monotonic()

    async def caller(n: int) -> None:
        i = n
        while (now := time.monotonic()) - start < seconds:
            subject = "alice" if i % 2 else "bob"
            i += 1
            d = await client.check({"type": "User", "id": subject}, "view", {"type": "Doc", "id": "d"})
            outcomes.append(Outcome(now - start, time.monotonic() - now, subject, d.decision, d.error))

    await asyncio.gather(*(caller(n) for n in range(CONCURRENCY)))
    return outcomes


def _client(topology: Topology, transport: CountingTransport | None = None, *, batching: bool = False) -> PolicyClient:
    # No cache, no single-flight: every check (or, with batching on, every batch) is a call to a
    # replica the client chose. With batching on, calls are few and rarely overlap, so least
    # outstanding alone saw ties and a slow replica kept its third of the calls (p99 ~7 → ~42 ms,
    # issue 14); the peak-EWMA latency estimate (BalanceConfig) is what steers away from it then.
    return PolicyClient(
        topology.policy_urls,
        cache=None,
        singleflight=False,
        batching=BatchConfig() if batching else None,
        timeout=1.0,
        transport=transport,
    )


def _wrong(outcomes: list[Outcome]) -> list[Outcome]:
    """Genuine decisions that are wrong, and any allow for bob whatever its source."""
    return [
        o
        for o in outcomes
        if (o.error is None and o.decision != (o.subject == "alice")) or (o.subject == "bob" and o.decision)
    ]


@pytest.mark.xfail(
    not hasattr(meshauth.client, "EjectionConfig"),
    reason="this meshauth.client has no endpoint ejection: a killed replica refuses at once, so the least-"
    "outstanding choice keeps picking it and ~1/3 of checks fail closed (policy_unavailable) until it is back;"
    " the client change that adds EjectionConfig fixes it (measured: 0 failed)",
    strict=True,
)
async def test_killing_a_policy_replica_under_load_makes_no_wrong_decision(topology: Topology) -> None:
    """SIGKILL one of three policy replicas mid-load: no wrong decision, checks go on being answered in
    every quarter second, and the latency rise is brief."""
    victim = topology.service("policy", topology.policy_ports[1])
    async with _client(topology) as client:
        before = await _load(client, 1.5)
        os.killpg(victim.pid, signal.SIGKILL)  # the service and its granian workers
        killed_at = time.monotonic()
        after = await _load(client, 3.0)
    assert not _wrong(before) and not _wrong(after)
    failed = [o for o in after if o.error is not None]
    print(
        f"before: {len(before)} checks, p99 {_p99(before) * 1000:.1f} ms; after the kill: {len(after)} checks,"
        f" p99 {_p99(after) * 1000:.1f} ms, {len(failed)} failed ({Counter(o.error for o in failed)})"
    )
    for window in range(12):
        answered = [o for o in after if window * 0.25 <= o.at < (window + 1) * 0.25 and o.error is None]
        assert answered, f"no check answered between {window * 0.25:.2f} and {(window + 1) * 0.25:.2f} s after the kill"
    assert len(failed) <= 0.01 * len(after)
    # `meshauth up` starts the killed replica again on its port; it serves the store as before.
    _wait_serving(topology, deadline=killed_at + 60)


def _wait_serving(topology: Topology, *, deadline: float) -> None:
    """Until every policy replica answers a decision correctly."""
    for url in topology.policy_urls:
        while not decides(url, "alice"):
            assert time.monotonic() < deadline, f"{url} is not serving"
            time.sleep(0.1)


def _p99(outcomes: list[Outcome]) -> float:
    return statistics.quantiles([o.latency for o in outcomes], n=100)[98]


class Slowed:
    """Makes one service slow but alive: its process group is stopped ``stopped`` of every ``period``
    seconds (SIGSTOP / SIGCONT), so each request it holds waits up to that long."""

    def __init__(self, pgid: int, *, period: float = 0.05, stopped: float = 0.045) -> None:
        self.pgid, self.period, self.stopped = pgid, period, stopped
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            os.killpg(self.pgid, signal.SIGSTOP)
            self._done.wait(self.stopped)
            os.killpg(self.pgid, signal.SIGCONT)
            self._done.wait(self.period - self.stopped)

    def __enter__(self) -> Slowed:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()
        os.killpg(self.pgid, signal.SIGCONT)


@pytest.mark.parametrize("batching", [False, True], ids=["one-call-per-check", "batching-on"])
async def test_a_slow_policy_replica_is_avoided(topology: Topology, batching: bool) -> None:
    """One replica made slow (stopped 90 % of the time) gets a small share of the calls, and every
    decision is still right; with all three healthy, each got about a third. With batching on (the
    default) as well: there calls rarely overlap, and the latency estimate is what sees the slow one."""
    _wait_serving(topology, deadline=time.monotonic() + 60)
    slow_url = topology.policy_urls[2]
    transport = CountingTransport()
    try:
        async with _client(topology, transport, batching=batching) as client:
            healthy = await _load(client, 1.0)
            even = dict(transport.calls)
            transport.calls.clear()
            with Slowed(topology.service("policy", topology.policy_ports[2]).pid):
                slowed = await _load(client, 2.0)
            skewed = dict(transport.calls)
    finally:
        await transport.aclose()  # a transport passed in is the caller's to close
    assert not _wrong(healthy) and not _wrong(slowed)
    even_share = even[slow_url] / sum(even.values())
    slow_share = skewed.get(slow_url, 0) / sum(skewed.values())
    failed = sum(o.error is not None for o in slowed)
    print(
        f"batching {'on' if batching else 'off'}: share of calls to {slow_url}: {even_share:.3f} healthy,"
        f" {slow_share:.3f} slowed;"
        f" p99 {_p99(healthy) * 1000:.1f} -> {_p99(slowed) * 1000:.1f} ms; failed {failed} of {len(slowed)}"
    )
    if batching:
        # Calls rarely overlap, so the choice is by latency estimate alone, and the cheapest of two
        # wins: the healthy split follows which replica answered fastest lately (measured 0.08-0.27
        # for this one on a loaded machine), while a slow one gets almost nothing (least outstanding
        # alone: ~1/3, p99 7 -> 42 ms).
        assert even_share > 0.03
        assert slow_share < 0.05
    else:
        # Calls overlap (16 callers, one call per check): outstanding calls spread them, and the
        # latency estimate skews the healthy split a little (measured 0.19-0.33 for this one).
        assert 0.1 < even_share < 0.5
        assert slow_share < even_share / 2
    assert failed <= 0.01 * len(slowed)
