"""The policy-service workload from issue 3: 1,000 policies over 50 resource types × 20 actions,
1,000 users and 10,000 resources, and request bodies spread at random over them.

Deterministic for a given seed, so runs compare.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

RESOURCE_TYPES = 50
ACTIONS = 20
USERS = 1_000
RESOURCES = 10_000
GROUPS = 20


@dataclass(frozen=True)
class Workload:
    policies: str
    entities: list[dict[str, Any]]

    @property
    def policy_count(self) -> int:
        return self.policies.count(";")


def build(seed: int = 7, resource_types: int = RESOURCE_TYPES) -> Workload:
    """The store: ``resource_types`` × 20 actions policies (50: the issue-3 store of 1,000)."""
    rng = random.Random(seed)
    policies = []
    for t in range(resource_types):
        for a in range(ACTIONS):
            # Each policy reads attributes of both entities and the principal's hierarchy, so a
            # decision needs the stored entities, not just the request.
            policies.append(
                f'@id("r{t}-a{a}")\n'
                f'permit(principal, action == Action::"a{a}", resource is R{t})\n'
                f'  when {{ principal.level >= resource.level || principal in Group::"g{(t + a) % GROUPS}" }};'
            )
    entities: list[dict[str, Any]] = [
        {"uid": {"type": "Group", "id": f"g{g}"}, "attrs": {}, "parents": []} for g in range(GROUPS)
    ]
    for u in range(USERS):
        entities.append(
            {
                "uid": {"type": "User", "id": f"u{u}"},
                "attrs": {"level": rng.randrange(10)},
                "parents": [{"type": "Group", "id": f"g{rng.randrange(GROUPS)}"}],
            }
        )
    for r in range(RESOURCES):
        entities.append(
            {
                "uid": {"type": f"R{r % resource_types}", "id": f"r{r}"},
                "attrs": {"level": rng.randrange(10)},
                "parents": [],
            }
        )
    return Workload("\n".join(policies), entities)


def random_request(rng: random.Random, resource_types: int = RESOURCE_TYPES) -> dict[str, Any]:
    r = rng.randrange(RESOURCES)
    return {
        "subject": {"type": "User", "id": f"u{rng.randrange(USERS)}"},
        "action": {"name": f"a{rng.randrange(ACTIONS)}"},
        "resource": {"type": f"R{r % resource_types}", "id": f"r{r}"},
    }


def every_key_bodies(resource_types: int = RESOURCE_TYPES) -> list[bytes]:
    """One request per (action, resource type): what the scope index compiles a subset for."""
    out = []
    for t in range(resource_types):
        for a in range(ACTIONS):
            body = {
                "subject": {"type": "User", "id": f"u{(t * ACTIONS + a) % USERS}"},
                "action": {"name": f"a{a}"},
                "resource": {"type": f"R{t}", "id": f"r{t}"},  # r{t} has type R{t % types}: t < RESOURCES
            }
            out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


def single_bodies(count: int, seed: int = 11, resource_types: int = RESOURCE_TYPES) -> list[bytes]:
    rng = random.Random(seed)
    return [json.dumps(random_request(rng, resource_types), separators=(",", ":")).encode() for _ in range(count)]


def batch_bodies(count: int, size: int, seed: int = 13, resource_types: int = RESOURCE_TYPES) -> list[bytes]:
    rng = random.Random(seed)
    return [
        json.dumps(
            {"evaluations": [random_request(rng, resource_types) for _ in range(size)]}, separators=(",", ":")
        ).encode()
        for _ in range(count)
    ]


# --- many stores (issue 8): one store per tenant, 20 policies and 20 users each -------------------

TENANT_TYPES = 4
TENANT_ACTIONS = 5  # 4 × 5 = 20 policies per store
TENANT_USERS = 20
TENANT_RESOURCES = 20
TENANT_GROUPS = 4


def tenant_store(seed: int) -> Workload:
    rng = random.Random(seed)
    policies = [
        f'@id("r{t}-a{a}")\n'
        f'permit(principal, action == Action::"a{a}", resource is R{t})\n'
        f'  when {{ principal.level >= resource.level || principal in Group::"g{(t + a) % TENANT_GROUPS}" }};'
        for t in range(TENANT_TYPES)
        for a in range(TENANT_ACTIONS)
    ]
    entities: list[dict[str, Any]] = [
        {"uid": {"type": "Group", "id": f"g{g}"}, "attrs": {}, "parents": []} for g in range(TENANT_GROUPS)
    ]
    entities += [
        {
            "uid": {"type": "User", "id": f"u{u}"},
            "attrs": {"level": rng.randrange(10)},
            "parents": [{"type": "Group", "id": f"g{rng.randrange(TENANT_GROUPS)}"}],
        }
        for u in range(TENANT_USERS)
    ]
    entities += [
        {"uid": {"type": f"R{r % TENANT_TYPES}", "id": f"r{r}"}, "attrs": {"level": rng.randrange(10)}, "parents": []}
        for r in range(TENANT_RESOURCES)
    ]
    return Workload("\n".join(policies), entities)


def tenant_request(rng: random.Random) -> dict[str, Any]:
    r = rng.randrange(TENANT_RESOURCES)
    return {
        "subject": {"type": "User", "id": f"u{rng.randrange(TENANT_USERS)}"},
        "action": {"name": f"a{rng.randrange(TENANT_ACTIONS)}"},
        "resource": {"type": f"R{r % TENANT_TYPES}", "id": f"r{r}"},
    }


def tenant_lines(count: int, stores: int, seed: int = 19) -> list[str]:
    """``count`` lines ``<store> <json body>`` spread at random over ``stores`` stores."""
    rng = random.Random(seed)
    return [f"t{rng.randrange(stores)} " + json.dumps(tenant_request(rng), separators=(",", ":")) for _ in range(count)]


def bulk_entities(count: int, seed: int = 17) -> list[dict[str, Any]]:
    """``count`` users for the bulk-load measurement (100,000 must load in < 30 s on SQLite)."""
    rng = random.Random(seed)
    return [
        {
            "uid": {"type": "User", "id": f"bulk{n}"},
            "attrs": {"level": rng.randrange(10), "email": f"user{n}@example.com"},
            "parents": [{"type": "Group", "id": f"g{rng.randrange(GROUPS)}"}],
        }
        for n in range(count)
    ]
