"""The scaling benchmark's results as Markdown tables, every figure with its ratio to the baseline case."""

from __future__ import annotations

from typing import Any


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}×" if base else "—"


def _vs(value: float, base: float) -> str:
    return f"{value:,.0f} ({_ratio(value, base)})"


def _ms_vs(value: float, base: float) -> str:
    return f"{value:.2f} ms ({_ratio(value, base)})"


def report(r: dict[str, Any]) -> str:
    lines: list[str] = []
    sizes = r["sizes"]
    if sizes:
        b = sizes[0]
        lines += [
            f"Store size (same run; ratios against the {b['policies']:,}-policy store):",
            "",
            f"| policies | single decisions/s | 64-item batch decisions/s | p95 at {r['rate']} req/s | upload (HTTP) "
            "| parse + index + conditions | server RSS after warm-up | index hit rate |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in sizes:
            a = s["activation"]
            hit = s["index_hit_rate"]
            single, batch = s["max_single"]["decisions_per_s"], s["max_batch64"]["decisions_per_s"]
            lines.append(
                f"| {s['policies']:,} "
                f"| {_vs(single, b['max_single']['decisions_per_s'])} "
                f"| {_vs(batch, b['max_batch64']['decisions_per_s'])} "
                f"| {_ms_vs(s['fixed_rate']['p95_ms'], b['fixed_rate']['p95_ms'])} "
                f"| {s['upload_s']:.1f} s ({s['upload_bytes'] / 1e6:.1f} MB) "
                f"| {a['parse_s']:.2f} + {a['index_s']:.2f} + {a['conditions_s']:.2f} s, "
                f"+{a['rss_added_mb']:.0f} MB "
                f"| {s['rss_end_mb']:.0f} MB "
                f"| {'—' if hit is None else f'{hit:.1%}'} |"
            )
        lines.append("")
    counts = r["stores"]
    if counts:
        b = next((c for c in counts if c["stores"] == 10), counts[0])
        one = next((c for c in counts if c["stores"] == 1), None)
        bf = b["in_flight_16_first"]
        lines += [
            f"Stores of 20 policies and 20 users (ratios against {b['stores']} stores; "
            f"fixed-rate p95 also against {'1 store' if one else '—'}):",
            "",
            "| stores | decisions/s at 16 in flight, first requests included | p95 at 16 in flight "
            f"| p95 at {r['rate']} req/s | same, warm: decisions/s / p95 | RSS per store "
            "| load on demand (cold / warm) | fresh process, 16 in flight: decisions/s / p95 | create |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in counts:
            f, w, fr = c["in_flight_16_first"], c["in_flight_16_warm"], c["fixed_rate"]
            fp = c["in_flight_16_fresh_process"]
            lod = c["load_on_demand_ms"]
            vs_one = f" ({_ratio(fr['p95_ms'], one['fixed_rate']['p95_ms'])} of 1)" if one else ""
            lines.append(
                f"| {c['stores']:,} "
                f"| {_vs(f['decisions_per_s'], bf['decisions_per_s'])} "
                f"| {_ms_vs(f['p95_ms_closed_loop'], bf['p95_ms_closed_loop'])} "
                f"| {fr['p95_ms']:.2f} ms{vs_one} "
                f"| {w['decisions_per_s']:,.0f} / {w['p95_ms_closed_loop']:.2f} ms "
                f"| {c['rss_per_store_kb']:.0f} KB "
                f"| {lod['cold_median']:.1f} / {lod['warm_median']:.1f} ms "
                f"| {fp['decisions_per_s']:,.0f} / {fp['p95_ms_closed_loop']:.2f} ms "
                f"| {c['create_s']:.0f} s |"
            )
    inter = r.get("interleaved")
    if inter:
        runs = {int(m): v for m, v in inter["decisions_per_s"].items()}
        base = 10 if 10 in runs else min(runs)
        lines += [
            "",
            f"Interleaved: every store count served at once, {inter['rounds']} alternating 2 s rounds at 16 in flight "
            f"right after creation (ratios against {base} stores, same moments):",
            "",
            "| stores | decisions/s per round | all rounds | first round |",
            "|---|---|---|---|",
        ]
        for m, v in sorted(runs.items()):
            lines.append(
                f"| {m:,} | {' / '.join(f'{x:,.0f}' for x in v)} "
                f"| {_ratio(sum(v), sum(runs[base]))} | {_ratio(v[0], runs[base][0])} |"
            )
    return "\n".join(lines)
