"""``meshauth bench`` (and ``make bench``): the whole benchmark harness in one command (issue 13).

Starts the stack (``bench.stack``: services on core 0, load generators on core 1), seeds the workload
(``bench.workload``), runs every scenario (``bench.scenarios``) paced at fixed offered rates and then
closed loop, reads the gate's cache counters during the Zipf runs and the policy service's CPU time
during the single and batched saturation runs, and writes ``bench/results/<timestamp>.json``,
``bench/REPORT.md`` and the PNG plots. Exit status: 0 when it measured (targets met or missed), 2 when it
could not (a tool missing, the stack not starting, a load generator failing).
"""

from __future__ import annotations

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

import psutil

from meshauth.bench import machine, probe, scenarios, stack, workload
from meshauth.bench.drivers import Run

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (granian's workers)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _warm(s: stack.Stack, built: list[scenarios.Scenario]) -> None:
    """Compile the policy subsets, build the snapshot, fill the warm caches (not recorded)."""
    for sc in built:
        if sc.name in ("authz_warm", "policy_single", "policy_batch64"):
            sc.drive(None, 2)


def run(plan: scenarios.Plan, sizes: workload.Sizes | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    sizes = sizes or workload.Sizes()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(argv or sys.argv),
        "plan": asdict(plan),
        "sizes": asdict(sizes),
        "zipf_s": 1.1,
        "machine": machine.describe(),
        "layout": {
            "core 0": "Valkey, policy service (1 worker), gate authn (1 worker), gate authz (1 worker)",
            "core 1": "load generator (wrk -t1 / h2load -t1)",
        },
        "scenarios": {},
    }
    t0 = time.monotonic()
    with stack.started(sizes) as s:
        results["seeding"] = s.seeding
        probe.probe(s)
        built = scenarios.build(s, plan, sizes)
        total = sum(len(sc.rates) + 1 for sc in built) + 1
        with progress(total) as bar:
            bar.step(f"seeded {s.seeding['entities']:,} entities in {s.seeding['entities_seconds']:.1f} s; warming up")
            _warm(s, built)
            for sc in built:
                out: dict[str, Any] = {"title": sc.title, "decisions_per_request": sc.decisions_per_request}
                before = _scrape(s.authz_url) if sc.name == "zipf_mixed" else None
                paced: list[dict[str, Any]] = []
                for rate in sc.rates:
                    bar.step(f"{sc.title}: {rate:,} req/s for {plan.seconds:g} s")
                    paced.append(asdict(sc.drive(rate, plan.seconds)))
                out["paced"] = paced
                bar.step(f"{sc.title}: saturation for {plan.saturation_seconds:g} s")
                cpu = cpu_seconds(s.pids["policy"])
                sat: Run = sc.drive(None, plan.saturation_seconds)
                out["saturation"] = asdict(sat)
                out["saturation"]["policy_cpu_seconds"] = cpu_seconds(s.pids["policy"]) - cpu
                if before is not None:
                    after = _scrape(s.authz_url)
                    out["cache"] = {k: after[k] - before[k] for k in after}
                results["scenarios"][sc.name] = out
    results["machine"]["load_average_end"] = machine.load_average()
    results["elapsed_seconds"] = time.monotonic() - t0
    return results


def main(*, quick: bool, out_dir: Path) -> int:
    """Run, write the report, print the targets table; the exit status (0 measured, 2 could not)."""
    from meshauth.bench import report

    missing = machine.missing_tools()
    if missing:
        print(
            f"meshauth bench: cannot measure, missing {', '.join(missing)}"
            " (Debian/Ubuntu: apt-get install wrk nghttp2-client util-linux)",
            file=sys.stderr,
        )
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
