"""The harness workload (issue 13): 10,000 users and 100,000 resources as Cedar entities, a 1,000-policy
store (50 resource types × 20 actions), a handful of OAuth clients (accounts: only as many as the gate
scenarios need), and the request lines the load generators replay, with Zipf popularity (s = 1.1).

Policies test group membership first, then levels: ``principal in Group::"g…" || principal.level >=
resource.level``. The gate's clients belong to every group, so every gate check is a genuine allow (also
for the cold runs' resources, which are not in the store: the ``||`` short-circuits before the attribute
read); the policy-service scenarios ask for users, whose answers are mixed allow and deny.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from meshauth.bench import zipf

RESOURCE_TYPES = 50
ACTIONS = 20
GROUPS = 20
USERS = 10_000
RESOURCES = 100_000
CLIENTS = 16  # gate principals: the only accounts created (client credentials)
BATCH = 64
CLIENT_SECRET = "bench-secret-0123"


@dataclass(frozen=True)
class Sizes:
    users: int = USERS
    resources: int = RESOURCES
    clients: int = CLIENTS


def client_id(k: int) -> str:
    return f"bench-c{k}"


def policies() -> str:
    return "\n".join(
        f'@id("r{t}-a{a}")\n'
        f'permit(principal, action == Action::"a{a}", resource is R{t})\n'
        f'  when {{ principal in Group::"g{(t + a) % GROUPS}" || principal.level >= resource.level }};'
        for t in range(RESOURCE_TYPES)
        for a in range(ACTIONS)
    )


def routes_yaml() -> str:
    """One gate route per resource type: ``GET /R{t}/{id}`` → action ``a0`` on ``R{t}::{id}``."""
    lines = ["routes:"]
    for t in range(RESOURCE_TYPES):
        lines.append(f'  - {{method: GET, path: "/R{t}/{{id}}", action: a0, resource: {{type: R{t}, id: "{{id}}"}}}}')
    return "\n".join(lines) + "\n"


def entities(sizes: Sizes = Sizes(), seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    groups = [{"type": "Group", "id": f"g{g}"} for g in range(GROUPS)]
    out: list[dict[str, Any]] = [{"uid": g, "attrs": {}, "parents": []} for g in groups]
    out += [
        {"uid": {"type": "Client", "id": client_id(k)}, "attrs": {"level": 10}, "parents": groups}
        for k in range(sizes.clients)
    ]
    out += [
        {
            "uid": {"type": "User", "id": f"u{u}"},
            "attrs": {"level": rng.randrange(10)},
            "parents": [groups[rng.randrange(GROUPS)]],
        }
        for u in range(sizes.users)
    ]
    out += [
        {"uid": {"type": f"R{r % RESOURCE_TYPES}", "id": f"r{r}"}, "attrs": {"level": rng.randrange(10)}, "parents": []}
        for r in range(sizes.resources)
    ]
    return out


def gate_path(resource: int) -> str:
    return f"/ext_authz/R{resource % RESOURCE_TYPES}/r{resource}"


def zipf_user_lines(count: int, sizes: Sizes = Sizes(), seed: int = 3) -> list[str]:
    """``path<TAB>@n`` lines for the gate in authz mode: a Zipf-chosen user (``@n``: line n of the
    users' token file, user ``u{n-1}``) asks for a Zipf-chosen resource. 10,000 users × 100,000
    resources: the key space of the cache-hit-rate figure (issue 13's workload)."""
    who = zipf.sample(sizes.users, count, seed=seed)
    what = zipf.sample(sizes.resources, count, seed=seed + 1)
    return [f"{gate_path(r)}\t@{u + 1}" for u, r in zip(who, what, strict=True)]


def _evaluation(user: int, resource: int, action: int) -> dict[str, Any]:
    return {
        "subject": {"type": "User", "id": f"u{user}"},
        "action": {"name": f"a{action}"},
        "resource": {"type": f"R{resource % RESOURCE_TYPES}", "id": f"r{resource}"},
    }


def _zipf_evaluations(count: int, sizes: Sizes, seed: int) -> list[dict[str, Any]]:
    users = zipf.sample(sizes.users, count, seed=seed)
    resources = zipf.sample(sizes.resources, count, seed=seed + 1)
    rng = random.Random(seed + 2)
    return [_evaluation(u, r, rng.randrange(ACTIONS)) for u, r in zip(users, resources, strict=True)]


def single_lines(count: int, sizes: Sizes = Sizes(), seed: int = 11) -> list[str]:
    """``path<TAB><TAB>body`` lines for ``POST /access/v1/evaluation`` (Zipf users and resources)."""
    return [
        "/access/v1/evaluation\t\t" + json.dumps(e, separators=(",", ":"))
        for e in _zipf_evaluations(count, sizes, seed)
    ]


def batch_lines(count: int, sizes: Sizes = Sizes(), seed: int = 13) -> list[str]:
    """``count`` 64-item ``POST /access/v1/evaluations`` lines."""
    flat = _zipf_evaluations(count * BATCH, sizes, seed)
    return [
        "/access/v1/evaluations\t\t"
        + json.dumps({"evaluations": flat[i * BATCH : (i + 1) * BATCH]}, separators=(",", ":"))
        for i in range(count)
    ]
