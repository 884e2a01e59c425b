"""``bench/REPORT.md`` and ``bench/results/<timestamp>.json`` from a harness results document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshauth.bench import plots, targets

RESULTS = "results"
REPORT = "REPORT.md"


def table(r: dict[str, Any]) -> list[str]:
    lines = ["| target | goal | measured | result |", "|---|---|---|---|"]
    lines += [f"| {row.label} | {row.goal} | {row.measured} | {row.verdict} |" for row in targets.rows(r)]
    return lines


def _ms(run: dict[str, Any], q: str) -> str:
    v = run["percentiles"].get(q)
    return f"{v:.2f}" if v is not None else "–"


def _spread(run: dict[str, Any], q: str) -> str:
    lo_hi = run.get("spread", {}).get(q)
    return f"{lo_hi[0]:.2f}–{lo_hi[1]:.2f}" if lo_hi else "–"


def _statuses(run: dict[str, Any]) -> str:
    """``200: 11,900, 403: 80`` and the socket errors that happened (the error breakdown)."""
    parts = [f"{code}: {n:,}" for code, n in run.get("statuses", {}).items()]
    parts += [f"{kind}: {n:,}" for kind, n in run.get("socket_errors", {}).items() if n]
    return ", ".join(parts) or "–"


def scenario_tables(r: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | offered req/s | achieved req/s | p50 ms | p95 ms | p95 spread | p99 ms | p99.9 ms | errors"
        " | answers by status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for sc in r["scenarios"].values():
        for run in sc["paced"]:
            lines.append(
                f"| {sc['title']} | {run['offered']:,.0f} | {run['achieved']:,.0f} | {_ms(run, '50')}"
                f" | {_ms(run, '95')} | {_spread(run, '95')} | {_ms(run, '99')} | {_ms(run, '99.9')}"
                f" | {run['errors']} | {_statuses(run)} |"
            )
    lines += [
        "",
        "Throughput at saturation (closed loop; its latencies suffer coordinated omission and are not quoted):",
        "",
        "| scenario | req/s | decisions/s | policy CPU-s | errors | answers by status |",
        "|---|---|---|---|---|---|",
    ]
    for sc in r["scenarios"].values():
        sat = sc["saturation"]
        decisions = sat["achieved"] * sc["decisions_per_request"]
        lines.append(
            f"| {sc['title']} | {sat['achieved']:,.0f} | {decisions:,.0f} | {sat.get('policy_cpu_seconds', 0):.2f}"
            f" | {sat['errors']} | {_statuses(sat)} |"
        )
    return lines


def cache_table(r: dict[str, Any]) -> list[str]:
    """The decision cache's hit rate per Zipf run window: the warm-up (cold start), then each rate."""
    zipf = r["scenarios"].get("zipf_mixed", {})
    windows = [("warm-up (cold start)", zipf["warmup"])] if zipf.get("warmup") else []
    windows += [(f"{p['offered']:,.0f} req/s", p) for p in zipf.get("paced", [])]
    if "saturation" in zipf:
        windows.append(("closed loop", zipf["saturation"]))
    lines = ["| window | checks | L1 hits | L2 hits | hit rate |", "|---|---|---|---|---|"]
    for name, run in windows:
        cache = run.get("cache")
        rate = targets.hit_rate(cache) if cache else None
        if cache is None or rate is None:
            continue
        checks = cache["l1_hit"] + cache["l1_miss"]
        lines.append(f"| {name} | {checks:,.0f} | {cache['l1_hit']:,.0f} | {cache['l2_hit']:,.0f} | {rate:.1%} |")
    return lines


def bus_table(r: dict[str, Any]) -> list[str]:
    bus = r.get("bus")
    if not bus:
        return ["Not measured."]
    lines = ["| offered req/s | audit | achieved req/s | p50 ms | p95 ms | p95 spread | p99 ms | errors |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for off, on in zip(bus["off"], bus["on"], strict=True):
        for mode, run in (("off", off), ("on", on)):
            lines.append(
                f"| {run['offered']:,.0f} | {mode} | {run['achieved']:,.0f} | {_ms(run, '50')} | {_ms(run, '95')}"
                f" | {_spread(run, '95')} | {_ms(run, '99')} | {run['errors']} |"
            )
    lines.append("")
    lines.append(f"Events stored by the audit worker over the whole run: {bus.get('audit_rows', 0):,}.")
    return lines


def batch_lines(r: dict[str, Any]) -> list[str]:
    doc = r.get("batch_path")
    if not doc:
        return ["Not measured."]
    lines = [
        "Modes: `single` one call per check; `batched` concurrent `check()` micro-batched (the figure);"
        " `explicit` `check_many` batches of 64 (beside it, where measured).",
        "",
        "| round | mode | decisions/s | client CPU-s | service CPU-s | decisions per path CPU-s | errors |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for i, rnd in enumerate(doc["rounds"], 1):
        for mode in ("single", "batched", "explicit"):
            if mode not in rnd:
                continue
            x = rnd[mode]
            lines.append(
                f"| {i} | {mode} | {x['decisions_per_s']:,.0f} | {x['client_cpu_s']:.2f} | {x['service_cpu_s']:.2f}"
                f" | {x['per_path_cpu_s']:,.0f} | {x['errors']} |"
            )
    lines += ["", f"Command: `{doc['command']}`"]
    return lines


def render(r: dict[str, Any], results_name: str) -> str:
    m = r["machine"]
    seed = r["seeding"]
    plan = r["plan"]
    out = [
        "# meshauth benchmark report (issue 13)",
        "",
        f"Generated by `{r['command']}` at {r['started']} in {r['elapsed_seconds']:.0f} s; raw numbers, machine and"
        f" every command line: [`results/{results_name}`](results/{results_name}).",
        "",
        "## Phase 2 targets",
        "",
        *table(r),
        "",
        f"How each figure is read. Latency: paced runs at a fixed offered rate, {plan['seconds']:g} s each,"
        f" {plan.get('repeats', 1)} repeats per point taken at different moments (interleaved with the other"
        " rates); a point is the median of its repeats and the scenario table gives the p95 spread (lowest–"
        f"highest repeat). `auth latency p95`: the gate in authn mode (HTTP ext_authz, auditing on, as"
        f" deployed) at {targets.REFERENCE_RATE:,} req/s. `policy latency p95`: single AuthZEN evaluations"
        f" at {targets.POLICY_REFERENCE_RATE:,} req/s (the gate's cache misses reach the service batched, as"
        " fewer, larger requests; single evaluations at 3,000 req/s are the row `policy latency p95, 3,000"
        " req/s`). `throughput`: the gate in authz mode, the Zipf"
        " workload, closed loop. `cache hit rate`: the gate's decision cache (L1 hits + L2 hits over"
        " checks, from the gate's own `meshauth_client_cache_total` counters scraped before and after each"
        " run, so only the measured windows count) under the realistic workload — 10,000 users (each with"
        " its own token) × 100,000 resources, both Zipf s = 1.1 — at"
        f" {targets.REFERENCE_RATE:,} req/s in steady state, i.e. after a"
        f" {plan.get('zipf_warmup_seconds', 0):g} s warm-up at the same distribution; the warm-up's own"
        " window is the cold-start figure. The gate caches an allow for 5 s and a deny for 1 s (the client's"
        " defaults), so steady state is reached within seconds and a longer warm-up does not raise it: the"
        " hit rate is the share of checks whose question was asked in the last few seconds, and it grows"
        " with the request rate (table below). `batch efficiency`: issue 10's definition — decisions per"
        " CPU-second of the whole policy path, `meshauth.client` plus the policy service's process tree,"
        " client batching (64) vs one call per check, both at saturation, caches off, questions from this"
        " workload; median of alternated rounds. `auth latency p95, audit on / off`: the same authn check"
        " on two gates, one auditing (the audit worker storing the events), one not, alternated at the"
        " same rates (issue 12's target ≤ 1.10×). Errors: socket errors plus answers with a status the"
        " scenario does not expect (200; for the Zipf workload 200 and 403, a genuine deny); a run with"
        " more than 1 % errors never passes. Offered rates the stack cannot sustain show as achieved <"
        " offered: the paced connections wait for slow answers.",
        "",
        "## Plots",
        "",
        f"![latency vs offered load]({plots.LOAD_PNG})",
        "",
        f"![latency distribution at {targets.REFERENCE_RATE:,} req/s]({plots.DISTRIBUTION_PNG})",
        "",
        "## Scenarios",
        "",
        *scenario_tables(r),
        "",
        "### Decision cache under the Zipf workload (hit rate per measured window)",
        "",
        *cache_table(r),
        "",
        "### Bus on vs off (gate authn, auditing on with the audit worker running vs auditing off)",
        "",
        *bus_table(r),
        "",
        "### Batch efficiency (client + policy service CPU, issue 10's definition)",
        "",
        *batch_lines(r),
        "",
        "## Configuration",
        "",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores; load average at start"
        f" {', '.join(f'{x:.2f}' for x in m['load_average_start'])}, at end"
        f" {', '.join(f'{x:.2f}' for x in m.get('load_average_end', []))} (other work shares this machine).",
        f"- Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + f"; {m['tools']['wrk']}; {m['tools']['h2load']}; commit `{m['git_commit']}`"
        + (" (uncommitted changes)" if m["git_dirty"] else ""),
        *[f"- {core}: {what}" for core, what in r["layout"].items()],
        f"- Workload: {r['sizes']['users']:,} users and {r['sizes']['resources']:,} resources as Cedar entities,"
        f" {seed['policies']:,} policies, {seed['accounts']} OAuth clients (the authn, authz warm and cold"
        " scenarios' principals; the Zipf scenario's principals are the users, each with an access token"
        f" minted with the gate's key in {seed.get('user_tokens_seconds', 0):.1f} s), Zipf s ="
        f" {r['zipf_s']}. Seeded through the policy admin API: policies {seed['policies_seconds']:.1f} s,"
        f" {seed['entities']:,} entities ({seed['entities_bytes'] / 1e6:.1f} MB, one request)"
        f" {seed['entities_seconds']:.1f} s.",
        "",
        "## Commands",
        "",
        "Every load-generator command as run, one per point (its repeats ran the same line; the Zipf runs"
        " each read their own file, `zipf_users-<n>.lines`, listed in the results JSON). To rerun one by"
        " hand: `python -m meshauth.bench.hold` starts the same stack with the same placement and seeds,"
        " writes the same request files, runs the same warm-up and writes `env.sh`; then `source"
        " <dir>/env.sh` and run the line under `flock /tmp/meshauth-bench.lock`. Compare with the point's"
        " median and spread.",
        "",
    ]
    for sc in r["scenarios"].values():
        for run in [*([sc["warmup"]] if sc.get("warmup") else []), *sc["paced"], sc["saturation"]]:
            out.append(f"- `{run['command']}`")
    for run in r.get("bus", {}).get("off", []) + r.get("bus", {}).get("on", []):
        out.append(f"- `{run['command']}`")
    return "\n".join(out) + "\n"


def write(r: dict[str, Any], out_dir: Path) -> tuple[Path, Path, list[Path]]:
    """Results JSON, plots and REPORT.md under ``out_dir`` (``bench/``)."""
    (out_dir / RESULTS).mkdir(parents=True, exist_ok=True)
    name = r["started"].replace(":", "").replace("-", "") + ".json"
    results = out_dir / RESULTS / name
    results.write_text(json.dumps(r, indent=2) + "\n")
    pngs = plots.draw(r, out_dir)
    report = out_dir / REPORT
    report.write_text(render(r, name))
    return results, report, pngs
