"""Policy uploads the engine cannot handle safely are refused before anything is written, and a
persisted version that cannot be served makes its store fail closed instead of crashing a worker.

Scenarios that would kill the interpreter on a regression run in a child process
(``tests/policy/upload_scenario.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshauth.policy.source_limits import Limits, limit_errors
from tests.policy.conftest import ADMIN, ask, decide, push

ROOT = Path(__file__).resolve().parents[2]
GOOD = (
    '@id("allow-all") permit(principal, action, resource);\n'
    '@id("no-bob") forbid(principal == User::"bob", action, resource);'
)


def _when(condition: str) -> str:
    return f'@id("hostile") forbid(principal, action, resource) when {{ {condition} }};'


HOSTILE = {
    "parentheses": _when("(" * 700 + "true" + ")" * 700),
    "brackets": _when("[" * 700 + "true" + "]" * 700 + " == []"),
    "records": _when("{a: " * 700 + "true" + "}" * 700 + " == {}"),
    "and-chain": _when(" && ".join(["true"] * 10_000)),
    "if-chain": _when("if true then " * 3_000 + "true" + " else true" * 3_000),
}
LIMIT_NAMES = {
    "parentheses": "policy_max_nesting_depth",
    "brackets": "policy_max_nesting_depth",
    "records": "policy_max_nesting_depth",
    "and-chain": "policy_max_expression_size",
    "if-chain": "policy_max_expression_size",
}


def _scenario(name: str, db_url: str, var: Path, text: str) -> dict[str, Any]:
    """Run a scenario in a child process; a crash there fails the test with its exit status."""
    policy_file = var / "policy.cedar"
    policy_file.write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.policy.upload_scenario", name, db_url, str(var), str(policy_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, f"the scenario process died (status {proc.returncode}): {proc.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_hostile_upload_is_refused_and_changes_nothing(shape: str, db_url: str, tmp_path: Path) -> None:
    """A policy deeper or larger than the limits is a 422 naming the limit; the previous version
    stays active, decisions are unchanged, and a fresh worker on the same database serves them."""
    out = _scenario("upload", db_url, tmp_path, HOSTILE[shape])
    assert out["upload"]["status"] == 422, out["upload"]
    body = out["upload"]["body"]
    assert body["error"] == "policy_too_complex"
    assert LIMIT_NAMES[shape] in body["error_description"]
    assert body["errors"][0]["id"] == "hostile"
    assert out["versions"]["active_version"] == 1
    assert [v["version"] for v in out["versions"]["versions"]] == [1]
    for who in ("alice", "fresh_alice"):
        assert out[who]["status"] == 200 and out[who]["body"]["decision"] is True, out[who]
    for who in ("bob", "fresh_bob"):
        assert out[who]["status"] == 200 and out[who]["body"]["decision"] is False, out[who]


def test_chained_comparisons_activate_only_what_every_worker_serves(db_url: str, tmp_path: Path) -> None:
    """~120 chained comparisons (past the engine's 100-level nesting limit when it converts them):
    the upload either is refused and changes nothing, or is activated and served by this worker
    and by a fresh one alike — never committed but unservable."""
    terms = " && ".join(f'principal.id != "u{i}"' for i in range(120))
    text = GOOD + "\n" + _when(f'principal == User::"alice" && {terms}')
    out = _scenario("upload", db_url, tmp_path, text)
    status = out["upload"]["status"]
    if status == 422:
        assert "limit" in out["upload"]["body"]["error_description"]
        assert [v["version"] for v in out["versions"]["versions"]] == [1]
        expected_alice = True
    else:
        assert status == 201, out["upload"]
        assert out["versions"]["active_version"] == 2
        expected_alice = False  # the new forbid applies (alice has no ``id``: the forbid errors, fail closed)
    for who in ("alice", "fresh_alice"):
        assert out[who]["status"] == 200, out[who]
        assert out[who]["body"]["decision"] is expected_alice, out[who]
    for who in ("bob", "fresh_bob"):
        assert out[who]["status"] == 200 and out[who]["body"]["decision"] is False, out[who]


@pytest.mark.parametrize("shape", ["parentheses", "and-chain"])
def test_persisted_poison_version_fails_closed_at_start(shape: str, db_url: str, tmp_path: Path) -> None:
    """A version an older release stored and activated that would crash the engine does not crash
    a starting worker: its store answers a clear 503 per request, other stores serve, the admin
    store view says why, and activating a good version repairs the store."""
    out = _scenario("persisted", db_url, tmp_path, HOSTILE[shape])
    for key in ("poisoned", "poisoned_again"):
        assert out[key]["status"] == 503, out[key]
        assert out[key]["body"]["error"] == "store_unavailable"
        assert LIMIT_NAMES[shape] in out[key]["body"]["error_description"]
    assert out["default"]["status"] == 200 and out["default"]["body"]["decision"] is True
    assert LIMIT_NAMES[shape] in out["view"]["process"]["unservable"]
    assert out["repair"]["status"] == 201, out["repair"]
    assert out["repaired"]["status"] == 200 and out["repaired"]["body"]["decision"] is True


async def test_limits_are_settings(make_app: Any) -> None:
    """The limits come from settings: a small nesting limit refuses what the default accepts."""
    nested = "permit(principal, action, resource) when { ((((true)))) };"
    async with make_app(policy_max_nesting_depth=4) as (_app, client):
        r = await client.post("/admin/stores/default/policies", json={"policies": nested}, headers=ADMIN)
        assert r.status_code == 422
        assert "policy_max_nesting_depth" in r.json()["error_description"]
        assert "limit is 4" in r.json()["error_description"]
    async with make_app() as (_app, client):
        await push(client, nested)
        assert (await decide(client, ask("User:a", "view", "Doc:d")))["decision"] is True


async def test_activating_a_stored_unservable_version_is_refused(client: httpx.AsyncClient, db_url: str) -> None:
    """Activating an old version (stored by an older release) that is over the limits is a 422;
    the active version stays."""
    from meshauth.db import create_engine
    from meshauth.policy import stores

    await push(client, GOOD)
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        # 500 terms: past the limit, yet short of crashing the engine, so safe to try in-process.
        chain = _when(" && ".join(["true"] * 500))
        bad = await stores.add_version(conn, "default", chain, "an older release")
    await engine.dispose()
    r = await client.post(f"/admin/stores/default/policies/{bad}/activate", headers=ADMIN)
    assert r.status_code == 422
    assert "policy_max_expression_size" in r.json()["error_description"]
    assert (await client.get("/admin/stores/default", headers=ADMIN)).json()["active_version"] == 1


async def test_deeply_nested_cedar_schema_is_refused(client: httpx.AsyncClient) -> None:
    """A Cedar schema nested past the limit is a 422 before the schema parser sees it (about
    2,000 levels crash the parser; 200 are checked here, safely in-process)."""
    schema = "entity User = " + "{a: " * 200 + "Long" + "}" * 200 + ";"
    r = await client.put(
        "/admin/stores/default/schema", content=schema, headers={**ADMIN, "content-type": "text/plain"}
    )
    assert r.status_code == 422
    assert "policy_max_nesting_depth" in r.json()["error_description"]


def test_limit_errors_name_the_policy_and_where() -> None:
    """The pre-parse check reports each policy over a limit, with its location and ``@id``."""
    text = 'permit(principal, action, resource);\n@id("deep") permit(principal, action, resource) when { ((true)) };'
    (error,) = limit_errors(text, Limits(max_nesting=2, max_expression=100))
    assert error.policy_id == "policy1"
    assert error.annotation_id == "deep"
    assert (error.location.line, error.location.column) == (2, 57)


def test_limit_errors_ignore_brackets_in_strings_and_comments() -> None:
    """Brackets inside strings and comments are not nesting."""
    text = 'permit(principal, action, resource) when { context.s == "((((((" }; // ((((((\n'
    assert limit_errors(text, Limits(max_nesting=3, max_expression=100)) == []


def test_wide_sets_are_not_large_expressions() -> None:
    """A long set literal is wide, not deep: it does not count against the expression size."""
    members = ", ".join(f'User::"u{i}"' for i in range(5_000))
    text = f"permit(principal, action, resource) when {{ principal in [{members}] }};"
    assert limit_errors(text, Limits(max_nesting=32, max_expression=400)) == []


_AT_THE_LIMITS = r"""
import asyncio, functools, sys
from meshauth.policy import cedar
from meshauth.policy.state import compile_state
from meshauth.policy.servable import Unservable, checked
from meshauth.policy.source_limits import Limits
from meshauth.policy.stores import StoreRow

text = sys.stdin.read()
row = StoreRow("s", 1, 1, None, None, 0, False)
limits = Limits(max_nesting=128, max_expression=1000)  # the largest values the settings accept


async def main() -> str:
    try:
        await cedar.compile_thread(checked, functools.partial(compile_state, row, index_enabled=True), text, limits)
    except Unservable as exc:
        return "refused " + exc.error
    policies = await cedar.compile_thread(cedar.parse_policies, text)
    request = cedar.request(("User", "u"), ("Action", "view"), ("User", "u"), None)
    # Evaluated on the main thread, as the event loop does.
    (result,) = cedar.authorize([request], policies, cedar.parse_entities("[]", None), None)
    return "served " + result.decision


print(asyncio.run(main()))
"""
AT_THE_LIMITS = {
    "parentheses": _when("(" * 127 + "true" + ")" * 127),
    "brackets": _when("[" * 126 + "true" + "]" * 126 + " == []"),
    "records": _when("{a: " * 126 + "true" + "}" * 126 + " == {}"),
    "and-chain": _when(" && ".join(["true"] * 1000)),
    "if-chain": _when("if true then " * 999 + "true" + " else true" * 999),
    "comparisons": _when(" && ".join(f'principal.id != "u{i}"' for i in range(333))),
    "nested-chain": _when("(" * 127 + " && ".join(["true"] * 800) + ")" * 127),
}


@pytest.mark.parametrize("shape", sorted(AT_THE_LIMITS))
def test_largest_settings_never_crash_the_engine(shape: str) -> None:
    """Text just within the largest limits the settings accept is compiled (on the engine thread)
    and evaluated (on the main thread) or refused with an error — never a crash."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-c", _AT_THE_LIMITS],
        input=AT_THE_LIMITS[shape],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, f"died with status {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.split()[0] in ("served", "refused"), proc.stdout


def test_crash_test_covers_the_largest_settings() -> None:
    """The shapes above sit at the largest values the settings accept; raising a setting's upper
    bound must come with a crash test at the new value."""
    from annotated_types import Le

    from meshauth.config import Settings

    def upper(name: str) -> object:
        return next(m.le for m in Settings.model_fields[name].metadata if isinstance(m, Le))

    assert upper("policy_max_nesting_depth") == 128
    assert upper("policy_max_expression_size") == 1000


# Layout Cedar takes but a backtracking reader did not: a run of ``//`` after a word (each ``//`` could
# start a new comment, so 2^(n/2) ways to read 64 slashes: the regex held the GIL and the worker,
# /healthz included, answered nothing), and a long run of layout after the last ``;`` (quadratic).
SLASHES = "/" * 200
LAYOUT_HOSTILE = {
    "slashes-after-a-word": (
        f'@id("no-bob") forbid(principal {SLASHES}\n, action, resource) when {{ principal {SLASHES}\n'
        f'== User::"bob" && !(Config::"g" {SLASHES}\n has lockdown) || context has x {SLASHES}\n}};\n'
        '@id("allow-all") permit(principal, action, resource);'
    ),
    "trailing-layout": GOOD + " \n\t" * 100_000,
}


@pytest.mark.parametrize("shape", sorted(LAYOUT_HOSTILE))
def test_comment_runs_and_trailing_layout_are_read_in_linear_time(shape: str, db_url: str, tmp_path: Path) -> None:
    """Valid Cedar with long ``//`` runs after words, or 300,000 characters of layout after its last
    ``;``, uploads and serves like any other text (the child process times out if reading it
    backtracks: 64 slashes took hours)."""
    out = _scenario("upload", db_url, tmp_path, LAYOUT_HOSTILE[shape])
    assert out["upload"]["status"] == 201, out["upload"]
    assert out["versions"]["active_version"] == 2
    for who, allowed in (("alice", True), ("fresh_alice", True), ("bob", False), ("fresh_bob", False)):
        assert out[who]["status"] == 200 and out[who]["body"]["decision"] is allowed, out[who]


def test_a_policy_over_a_limit_under_many_bare_annotations_is_located_in_linear_time(
    db_url: str, tmp_path: Path
) -> None:
    """Naming a policy over a limit reads its ``@id`` among its annotations: 40 annotations without a
    value (``@a   ``), none of them ``@id``, once cost 2^40 tries in a child that never answered
    (12 took minutes); now a plain 422 naming the line."""
    bare = "".join(f"@a{n}        " for n in range(40))
    deep = "permit(principal, action, resource) when { " + "(" * 40 + "true" + ")" * 40 + " };"
    out = _scenario("upload", db_url, tmp_path, GOOD + "\n" + bare + deep)
    assert out["upload"]["status"] == 422, out["upload"]
    body = out["upload"]["body"]
    assert body["error"] == "policy_too_complex"
    assert (body["errors"][0]["line"], body["errors"][0]["id"]) == (3, None)
    assert out["versions"]["active_version"] == 1
