"""The harness workload: sizes as the issue asks, the gate's routes reach the store's resources, and the
policies allow every gate principal (also for a resource not in the store) while users get mixed answers."""

from __future__ import annotations

import json

import cedarpy

from meshauth.bench import workload
from meshauth.routes import parse_routes

SMALL = workload.Sizes(users=200, resources=500, clients=3)


def test_full_sizes() -> None:
    entities = workload.entities()
    kinds = [e["uid"]["type"] for e in entities]
    assert kinds.count("User") == 10_000
    assert sum(k.startswith("R") for k in kinds) == 100_000
    assert kinds.count("Client") == workload.CLIENTS
    assert workload.policies().count("@id(") == 1000


def test_routes_map_gate_paths_to_store_resources() -> None:
    table = parse_routes(workload.routes_yaml())
    for r in (0, 7, 49, 50, 99_999):
        path = workload.gate_path(r).removeprefix("/ext_authz")
        match = table.match("GET", path)
        assert match.action == "a0"
        assert match.resource == {"type": f"R{r % 50}", "id": f"r{r}"}


def _decide(principal: dict[str, str], action: str, resource: dict[str, str], entities: list[dict]) -> bool:  # type: ignore[type-arg]
    request = {
        "principal": f'{principal["type"]}::"{principal["id"]}"',
        "action": f'Action::"{action}"',
        "resource": f'{resource["type"]}::"{resource["id"]}"',
        "context": {},
    }
    return bool(cedarpy.is_authorized(request, workload.policies(), entities).allowed)


def test_gate_clients_always_allowed_users_mixed() -> None:
    entities = workload.entities(SMALL)
    client = {"type": "Client", "id": workload.client_id(0)}
    assert _decide(client, "a0", {"type": "R3", "id": "r3"}, entities)
    assert _decide(client, "a0", {"type": "R0", "id": "c1234-1"}, entities)  # the cold runs' resources
    answers = {
        _decide({"type": "User", "id": f"u{u}"}, f"a{u % 20}", {"type": f"R{u % 50}", "id": f"r{u}"}, entities)
        for u in range(60)
    }
    assert answers == {True, False}


def test_request_lines() -> None:
    gate = workload.zipf_user_lines(2000, SMALL, seed=5)
    assert len(gate) == 2000
    assert gate == workload.zipf_user_lines(2000, SMALL, seed=5)  # a seed gives the same file (bench.hold)
    rows = [line.split("\t") for line in gate]
    assert all(path.startswith("/ext_authz/R") and who.startswith("@") for path, who in rows)
    users = [int(who[1:]) for _, who in rows]
    # @n is line n of the token file: users u0 … u{users-1}, and the most popular is u0 (Zipf rank 0)
    assert min(users) == 1 and max(users) <= SMALL.users
    assert max(set(users), key=users.count) == 1
    single = workload.single_lines(10, SMALL)
    path, auth, body = single[0].split("\t")
    assert (path, auth) == ("/access/v1/evaluation", "")
    assert set(json.loads(body)) == {"subject", "action", "resource"}
    batch = workload.batch_lines(2, SMALL)
    assert len(json.loads(batch[0].split("\t")[2])["evaluations"]) == 64
