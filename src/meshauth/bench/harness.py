"""``meshauth bench`` (and ``make bench``): the whole benchmark harness in one command (issue 13).

Starts the stack (``bench.stack``: services on core 0, load generators on core 1), seeds the workload
(``bench.workload``), runs every scenario (``bench.scenarios``) paced at fixed offered rates and then
closed loop, reads the gate's cache counters during the Zipf runs and the policy service's CPU time
during the single and batched saturation runs, and writes ``bench/results/<timestamp>.json``,
``bench/REPORT.md`` and the PNG plots. Exit status: 0 when it measured (targets met or missed), 2 when it
could not (a tool missing, the stack not starting, a load generator failing).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from meshauth.bench import bus_compare, machine, probe, repeats, scenarios, stack, workload
from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.drivers import HARNESS_LUA
from meshauth.bench.loadgen import CLIENT_CORE, pinned

_CACHE = re.compile(r'^meshauth_client_cache_total\{level="(l1|l2)",result="(hit|miss)"\} ([0-9.e+]+)$', re.MULTILINE)


class Progress(Protocol):
    def step(self, text: str) -> None: ...


class PlainProgress:
    """One line per step (no terminal needed: logs, CI)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.monotonic()

    def step(self, text: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total} {time.monotonic() - self.t0:5.0f} s] {text}", flush=True)


@contextmanager
def progress(total: int) -> Iterator[Progress]:
    """A rich progress bar on a terminal, plain lines otherwise."""
    if not sys.stdout.isatty():
        yield PlainProgress(total)
        return
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    with RichProgress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn()
    ) as bar:
        task = bar.add_task("meshauth bench", total=total)

        class _Rich:
            def step(self, text: str) -> None:
                bar.update(task, advance=1, description=text)

        yield _Rich()


def cache_counts(metrics_text: str) -> dict[str, float]:
    """``l1_hit``, ``l1_miss``, ``l2_hit``, ``l2_miss`` from the gate's /metrics text."""
    out = {f"{lv}_{res}": 0.0 for lv in ("l1", "l2") for res in ("hit", "miss")}
    for level, result, value in _CACHE.findall(metrics_text):
        out[f"{level}_{result}"] += float(value)
    return out


def _scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        return cache_counts(resp.read().decode())


cpu_seconds = tree_cpu  # user + system CPU of a process and its children (granian's workers)


def warm_up(s: stack.Stack, built: list[scenarios.Scenario]) -> None:
    """Compile the policy subsets, build the snapshot, fill the warm caches (not recorded)."""
    for sc in built:
        if sc.name in ("authz_warm", "policy_single", "policy_batch64"):
            sc.drive(None, 2)


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def measure_scenario(s: stack.Stack, sc: scenarios.Scenario, plan: scenarios.Plan, bar: Progress) -> dict[str, Any]:
    """Warm-up (Zipf only), every paced repeat (interleaved across the rates), then saturation. The
    Zipf runs carry the gate's cache counters over exactly their own window."""
    out: dict[str, Any] = {"title": sc.title, "decisions_per_request": sc.decisions_per_request}
    counted = sc.name == "zipf_mixed"

    def drive(rate: float | None, seconds: float) -> dict[str, Any]:
        before = _scrape(s.authz_url) if counted else None
        run = asdict(sc.drive(rate, seconds))
        if before is not None:
            run["cache"] = _delta(_scrape(s.authz_url), before)
        return run

    if sc.warmup:
        bar.step(f"{sc.title}: warm-up at {scenarios.ZIPF_WARMUP_RATE:,} req/s for {sc.warmup:g} s")
        out["warmup"] = drive(scenarios.ZIPF_WARMUP_RATE, sc.warmup)
    runs = []
    for k in range(plan.repeats):
        for rate in sc.rates:
            bar.step(f"{sc.title}: {rate:,} req/s for {plan.seconds:g} s ({k + 1}/{plan.repeats})")
            runs.append(drive(rate, plan.seconds))
    out["paced"] = repeats.by_rate(runs)
    bar.step(f"{sc.title}: saturation for {plan.saturation_seconds:g} s")
    cpu = cpu_seconds(s.pids["policy"])
    out["saturation"] = drive(None, plan.saturation_seconds)
    out["saturation"]["policy_cpu_seconds"] = cpu_seconds(s.pids["policy"]) - cpu
    return out


def batch_path(s: stack.Stack, plan: scenarios.Plan) -> dict[str, Any]:
    """Issue 10's batch efficiency on this stack (``bench.batch_path``, on the client core)."""
    args = ["--url", s.policy_url, "--pid", str(s.pids["policy"]), "--seconds", f"{plan.batch_path_seconds:g}"]
    args += ["--rounds", str(plan.batch_path_rounds)]
    cmd = pinned(["python", "-m", "meshauth.bench.batch_path", *args], CLIENT_CORE)
    done = subprocess.run(
        [sys.executable if c == "python" else c for c in cmd], capture_output=True, text=True, check=True
    )
    doc: dict[str, Any] = json.loads(done.stdout)
    doc["command"] = " ".join(cmd)
    return doc


def placeholders(s: stack.Stack) -> dict[str, str]:
    """What differs between two stacks (ports, directory, pid), as the variables ``bench.hold`` exports."""
    return {
        s.policy_url: "$POLICY_URL",
        s.authn_url: "$AUTHN_URL",
        s.authz_url: "$AUTHZ_URL",
        s.grpc_url: "$GRPC_URL",
        s.quiet_url: "$QUIET_URL",
        str(s.root): "$BENCH_DIR",
        str(HARNESS_LUA): "$HARNESS_LUA",
        f"--pid {s.pids['policy']}": "--pid $POLICY_PID",
    }


def substituted(doc: Any, mapping: dict[str, str]) -> Any:
    """Every ``command`` string in ``doc`` with the run's own values replaced by their variables."""
    if isinstance(doc, dict):
        return {
            k: _replace(v, mapping) if k == "command" and isinstance(v, str) else substituted(v, mapping)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [substituted(v, mapping) for v in doc]
    return doc


def _replace(text: str, mapping: dict[str, str]) -> str:
    for value in sorted(mapping, key=len, reverse=True):
        text = text.replace(value, mapping[value])
    return text


def steps(plan: scenarios.Plan, built: list[scenarios.Scenario]) -> int:
    paced = sum(len(sc.rates) * plan.repeats + 1 + (1 if sc.warmup else 0) for sc in built)
    return 1 + paced + len(plan.bus_rates) * plan.bus_rounds * len(bus_compare.MODES) + 1


def run(plan: scenarios.Plan, sizes: workload.Sizes | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    sizes = sizes or workload.Sizes()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(argv or sys.argv),
        "plan": asdict(plan),
        "sizes": asdict(sizes),
        "zipf_s": 1.1,
        "machine": machine.describe(),
        "layout": stack.LAYOUT,
        "scenarios": {},
    }
    t0 = time.monotonic()
    with stack.started(sizes) as s:
        results["seeding"] = s.seeding
        probe.probe(s)
        built = scenarios.build(s, plan, sizes)
        with progress(steps(plan, built)) as bar:
            bar.step(f"seeded {s.seeding['entities']:,} entities in {s.seeding['entities_seconds']:.1f} s; warming up")
            warm_up(s, built)
            for sc in built:
                results["scenarios"][sc.name] = measure_scenario(s, sc, plan, bar)

            def bus_drive(mode: str, rate: float, seconds: float) -> dict[str, Any]:
                bar.step(f"bus {mode}: gate authn at {rate:,.0f} req/s for {seconds:g} s")
                return bus_compare.drive(s, mode, rate, seconds)

            results["bus"] = bus_compare.run(bus_drive, plan.bus_rates, plan.seconds, plan.bus_rounds)
            results["bus"]["audit_rows"] = stack.audit_rows(s.database_url)
            bar.step("batch efficiency: client + policy service CPU, batched vs single")
            results["batch_path"] = batch_path(s, plan)
        results = substituted(results, placeholders(s))
    results["machine"]["load_average_end"] = machine.load_average()
    results["elapsed_seconds"] = time.monotonic() - t0
    return results


def main(*, quick: bool, out_dir: Path, install_tools: bool = False) -> int:
    """Run, write the report, print the targets table; the exit status (0 measured, 2 could not)."""
    from meshauth.bench import report

    missing = machine.missing_tools()
    if missing:
        problem = machine.install_tools(missing, allowed=install_tools)
        if problem is not None:
            print(f"meshauth bench: cannot measure, {problem}", file=sys.stderr)
            return 2
    plan = scenarios.QUICK if quick else scenarios.FULL
    try:
        r = run(plan, argv=["meshauth", "bench", *(["--quick"] if quick else [])])
    except (OSError, RuntimeError, subprocess.CalledProcessError, TimeoutError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        print(f"meshauth bench: could not measure: {exc}\n{detail}", file=sys.stderr)
        return 2
    results, report_path, pngs = report.write(r, out_dir)
    print("\n".join(report.table(r)))
    print(f"\nwrote {report_path}, {results}, " + ", ".join(str(p) for p in pngs))
    return 0
