"""The replica plan of ``meshauth up --auth-replicas N --policy-replicas M``: ports, names, environments."""

from __future__ import annotations

import json

import pytest

from meshauth.config import Settings
from meshauth.local.replicas import MAX_REPLICAS, plan


def settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


def test_phase1_topology_on_consecutive_ports() -> None:
    """5 auth replicas from auth_port (gRPC from grpc_port) and 3 policy replicas from policy_port."""
    topology = plan(settings(auth_port=8080, grpc_port=9001, policy_port=8090), auth_replicas=5, policy_replicas=3)
    assert [(r.name, r.port, r.grpc_port) for r in topology.auth] == [
        ("auth", 8080, 9001),
        ("auth-2", 8081, 9002),
        ("auth-3", 8082, 9003),
        ("auth-4", 8083, 9004),
        ("auth-5", 8084, 9005),
    ]
    assert [(r.name, r.port) for r in topology.policy] == [("policy", 8090), ("policy-2", 8091), ("policy-3", 8092)]
    assert topology.policy_urls == ["http://127.0.0.1:8090", "http://127.0.0.1:8091", "http://127.0.0.1:8092"]


def test_one_replica_each_is_the_classic_stack() -> None:
    """The defaults keep the plain names and the configured ports."""
    topology = plan(settings(), auth_replicas=1, policy_replicas=1)
    assert [(r.name, r.port) for r in (*topology.auth, *topology.policy)] == [("auth", 8080), ("policy", 8090)]


def test_auth_children_get_every_policy_url_and_their_own_ports() -> None:
    """Each auth child's environment names its ports and all policy replicas; policy children only their port."""
    topology = plan(settings(policy_port=8090), auth_replicas=2, policy_replicas=3)
    shared = {"MESHAUTH_REDIS_URL": "redis://127.0.0.1:1/0", "MESHAUTH_AUTH_PORT": "8080"}
    env = topology.child_env(topology.auth[1], shared)
    assert env["MESHAUTH_AUTH_PORT"] == "8081" and env["MESHAUTH_GRPC_PORT"] == "9002"
    assert json.loads(env["MESHAUTH_POLICY_URLS"]) == topology.policy_urls
    assert env["MESHAUTH_REDIS_URL"] == shared["MESHAUTH_REDIS_URL"]
    policy_env = topology.child_env(topology.policy[2], shared)
    assert policy_env["MESHAUTH_POLICY_PORT"] == "8092" and "MESHAUTH_POLICY_URLS" not in policy_env
    assert shared == {"MESHAUTH_REDIS_URL": "redis://127.0.0.1:1/0", "MESHAUTH_AUTH_PORT": "8080"}


def test_policy_urls_given_by_the_operator_are_kept() -> None:
    """MESHAUTH_POLICY_URLS already in the environment (policy replicas elsewhere) is not replaced."""
    topology = plan(settings(), auth_replicas=1, policy_replicas=2)
    env = topology.child_env(topology.auth[0], {"MESHAUTH_POLICY_URLS": '["http://policy.example:8090"]'})
    assert env["MESHAUTH_POLICY_URLS"] == '["http://policy.example:8090"]'


@pytest.mark.parametrize(
    ("auth", "policy", "option"), [(0, 1, "--auth-replicas"), (1, MAX_REPLICAS + 1, "--policy-replicas")]
)
def test_counts_out_of_range_are_refused(auth: int, policy: int, option: str) -> None:
    """Replica counts outside 1..MAX_REPLICAS are an error naming the option."""
    with pytest.raises(ValueError, match=option):
        plan(settings(), auth_replicas=auth, policy_replicas=policy)


def test_overlapping_port_ranges_are_refused() -> None:
    """11 auth replicas from 8080 would reach the policy port 8090: refused, naming both."""
    with pytest.raises(ValueError, match=r"auth \(MESHAUTH_AUTH_PORT\) and policy \(MESHAUTH_POLICY_PORT\) overlap"):
        plan(settings(auth_port=8080, policy_port=8090), auth_replicas=11, policy_replicas=1)


def test_ranges_past_the_last_port_and_from_port_zero_are_refused() -> None:
    """A range past 65535, or several replicas from port 0 (any free port), cannot be planned."""
    with pytest.raises(ValueError, match="past 65535"):
        plan(settings(policy_port=65_535), auth_replicas=1, policy_replicas=2)
    with pytest.raises(ValueError, match="is 0"):
        plan(settings(auth_port=0), auth_replicas=2, policy_replicas=1)
