"""How many auth and policy processes ``meshauth up`` runs, and on which loopback ports.

The Phase 1 topology (docs/deploy.md) on one machine: ``--auth-replicas N --policy-replicas M``
starts N auth services on consecutive ports from ``auth_port`` (their gRPC ext_authz listeners on
consecutive ports from ``grpc_port``) and M policy services on consecutive ports from
``policy_port``. No mesh balances between them here: each auth replica is given every policy
replica's URL (``MESHAUTH_POLICY_URLS``) and its policy client balances across them, as
``meshauth.client`` does for any caller. The first replica of each keeps the plain name (``auth``,
``policy``) and the configured ports, so a one-replica stack is what it always was.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Literal

from meshauth.config import Settings

MAX_REPLICAS = 16
POLICY_URLS_VAR = "MESHAUTH_POLICY_URLS"

Service = Literal["auth", "policy"]


@dataclass(frozen=True)
class Replica:
    service: Service
    index: int  # 0-based
    host: str
    port: int
    grpc_port: int | None = None  # auth only

    @property
    def name(self) -> str:
        return self.service if self.index == 0 else f"{self.service}-{self.index + 1}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The settings that make this process this replica (the rest is the stack's shared environment)."""
        if self.service == "policy":
            return {"MESHAUTH_POLICY_PORT": str(self.port)}
        return {"MESHAUTH_AUTH_PORT": str(self.port), "MESHAUTH_GRPC_PORT": str(self.grpc_port)}


@dataclass(frozen=True)
class Topology:
    auth: tuple[Replica, ...]
    policy: tuple[Replica, ...]

    @property
    def policy_urls(self) -> list[str]:
        return [r.url for r in self.policy]

    def child_env(self, replica: Replica, shared: dict[str, str]) -> dict[str, str]:
        """``shared`` (the stack's environment) with this replica's ports; auth replicas also get every
        policy replica's URL, unless the environment already names policy URLs of its own."""
        env = {**shared, **replica.env()}
        if replica.service == "auth" and POLICY_URLS_VAR not in shared:
            env[POLICY_URLS_VAR] = json.dumps(self.policy_urls)
        return env


def plan(settings: Settings, *, auth_replicas: int, policy_replicas: int) -> Topology:
    """The replicas to start; ValueError, naming the option, when the counts or port ranges do not work."""
    for option, count in (("--auth-replicas", auth_replicas), ("--policy-replicas", policy_replicas)):
        if not 1 <= count <= MAX_REPLICAS:
            raise ValueError(f"{option} must be from 1 to {MAX_REPLICAS}, not {count}")
    ranges = {
        "auth (MESHAUTH_AUTH_PORT)": (settings.auth_host, settings.auth_port, auth_replicas),
        "ext_authz gRPC (MESHAUTH_GRPC_PORT)": (settings.auth_host, settings.grpc_port, auth_replicas),
        "policy (MESHAUTH_POLICY_PORT)": (settings.policy_host, settings.policy_port, policy_replicas),
    }
    for what, (_host, first, count) in ranges.items():
        if count > 1 and first == 0:
            raise ValueError(f"{what} is 0 (any free port): several replicas need a first port to count up from")
        if first + count - 1 > 65_535:
            raise ValueError(f"{what}: {count} replicas from port {first} run past 65535")
    spans = sorted((first, first + count - 1, what) for what, (_h, first, count) in ranges.items() if first)
    for (_lo, hi, what), (lo2, _hi2, what2) in itertools.pairwise(spans):
        if lo2 <= hi:
            raise ValueError(
                f"the ports of {what} and {what2} overlap with these replica counts (at {lo2});"
                " set the first ports further apart"
            )
    auth = tuple(
        Replica("auth", i, settings.auth_host, settings.auth_port + i, settings.grpc_port + i)
        for i in range(auth_replicas)
    )
    policy = tuple(Replica("policy", i, settings.policy_host, settings.policy_port + i) for i in range(policy_replicas))
    return Topology(auth=auth, policy=policy)
