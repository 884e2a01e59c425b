"""``bench.hold``'s env.sh gives back, in a shell, exactly the values the harness replaced in a recorded
command line (ports, directory, pid, token, script)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from meshauth.bench import harness, hold
from meshauth.bench.drivers import HARNESS_LUA
from meshauth.bench.stack import Stack


def _stack(root: Path) -> Stack:
    return Stack(
        root=root,
        policy_url="http://127.0.0.1:40001",
        authn_url="http://127.0.0.1:40002",
        authz_url="http://127.0.0.1:40003",
        grpc_url="http://127.0.0.1:40004",
        quiet_url="http://127.0.0.1:40005",
        tokens=["eyJ.token-0", "eyJ.token-1"],
        users_tokens=root / "users.tokens",
        database_url=f"sqlite:///{root}/bench.db",
        pids={"policy": 4242},
    )


def test_env_sh_restores_every_recorded_value(tmp_path: Path) -> None:
    s = _stack(tmp_path / "meshauth-bench-harness-x1")
    as_run = (
        f"PACE_RATE=3000 HARNESS_LINES={s.root}/zipf_users-3.lines taskset -c 1 wrk -t1 -c30 -d4s"
        f' -s {HARNESS_LUA} -H "authorization: Bearer $TOKEN" {s.authz_url}'
        f" python -m meshauth.bench.batch_path --url {s.policy_url} --pid 4242"
    )
    recorded = harness.substituted({"command": as_run}, harness.placeholders(s))["command"]
    assert "40003" not in recorded and str(s.root) not in recorded and "4242" not in recorded
    env = tmp_path / "env.sh"
    env.write_text(hold.env_file(s))
    # What a person does: source env.sh, then paste the recorded line; here its words are printed, one a
    # line, as the shell would pass them to the program.
    script = f"source {env}; for word in {recorded}; do printf '%s\\n' \"$word\"; done"
    words = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert words == shlex.split(as_run.replace("$TOKEN", "eyJ.token-0"))
