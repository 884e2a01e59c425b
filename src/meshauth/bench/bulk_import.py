"""Bulk user import (issue 11): ``meshauth bench import``.

1. ``meshauth admin users import`` of ``--users`` (100,000) users carrying argon2id PHC hashes, as a
   migration brings them (m=65536, t=3, p=1, random 16-byte salt and 32-byte hash: the import checks
   their form and stores them, it never verifies them), timed end to end as a command (start-up and
   migration check included) on a fresh SQLite file, and on PostgreSQL when ``--postgres-url`` is given;
2. the same command on ``--plain`` (2,000) users with plain passwords, hashed at the configured cost
   (the defaults: t=3, m=64 MiB, p=1) on the process pool;
3. the cores' raw hashing rate at the same cost: each core hashing alone, sequentially, in parallel
   processes (what no import can beat), in the same run.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher, Type

from meshauth.config import Settings


def _phc() -> str:
    def b64(n: int) -> str:
        return base64.b64encode(secrets.token_bytes(n)).decode().rstrip("=")

    return f"$argon2id$v=19$m=65536,t=3,p=1${b64(16)}${b64(32)}"


def _write(path: Path, count: int, *, hashed: bool) -> None:
    with path.open("w") as f:
        for n in range(count):
            secret = {"password_hash": _phc()} if hashed else {"password": f"password-{n:08d}"}
            f.write(json.dumps({"username": f"user{n}", **secret, "attributes": {"n": n}}) + "\n")


def _import(path: Path, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "meshauth", "admin", "users", "import", str(path)]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"import failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    written = summary["created"] + summary["updated"]
    return {
        "command": "python -m meshauth admin users import " + path.name,
        "users": written,
        "seconds": seconds,
        "users_per_s": written / seconds,
    }


def _hash_n(n: int) -> float:
    s = Settings()
    hasher = PasswordHasher(
        time_cost=s.argon2_time_cost, memory_cost=s.argon2_memory_kib, parallelism=s.argon2_parallelism, type=Type.ID
    )
    start = time.perf_counter()
    for i in range(n):
        hasher.hash(f"password-{i}")
    return time.perf_counter() - start


def raw_rate(per_core: int) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    start = time.perf_counter()
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_hash_n, [per_core] * cores))
    seconds = time.perf_counter() - start
    return {"cores": cores, "hashes": per_core * cores, "seconds": seconds, "hashes_per_s": per_core * cores / seconds}


def _env(var: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTH_") and k != "DATABASE_URL"}
    env.update(MESHAUTH_VAR_DIR=str(var), MESHAUTH_DATABASE_URL=database_url)
    return env


def run(*, users: int, plain: int, postgres_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="meshauth-bench-import-") as tmp:
        root = Path(tmp)
        hashed_file, plain_file = root / "hashed.jsonl", root / "plain.jsonl"
        _write(hashed_file, users, hashed=True)
        _write(plain_file, plain, hashed=False)
        out["phc_sqlite"] = _import(hashed_file, _env(root, f"sqlite:///{root / 'a.db'}"))
        if postgres_url:
            out["phc_postgresql"] = _import(hashed_file, _env(root, postgres_url))
        out["plain_sqlite"] = _import(plain_file, _env(root, f"sqlite:///{root / 'b.db'}"))
        out["raw_hashing"] = raw_rate(max(1, plain // (os.cpu_count() or 1) // 4))
    out["plain_over_raw"] = out["plain_sqlite"]["users_per_s"] / out["raw_hashing"]["hashes_per_s"]
    return out


def report(r: dict[str, Any]) -> str:
    lines = ["| measurement | result |", "|---|---|"]
    for key, label in (
        ("phc_sqlite", "PHC hashes, SQLite"),
        ("phc_postgresql", "PHC hashes, PostgreSQL"),
        ("plain_sqlite", "plain passwords (default cost), SQLite"),
    ):
        if key in r:
            m = r[key]
            lines.append(
                f"| import {m['users']:,} users, {label} | {m['seconds']:.2f} s, **{m['users_per_s']:,.0f} users/s** |"
            )
    raw = r["raw_hashing"]
    lines.append(f"| raw argon2id hashing, {raw['cores']} cores, default cost | {raw['hashes_per_s']:,.1f} hashes/s |")
    lines.append(f"| plain import / raw hashing rate | **{r['plain_over_raw']:.2f}×** |")
    return "\n".join(lines)
