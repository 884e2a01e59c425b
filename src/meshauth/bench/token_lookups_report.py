"""The report of ``meshauth bench token`` (``bench.token_lookups``): tables per database, every round."""

from __future__ import annotations

import statistics
from typing import Any

_HEADER = [
    "| round | load | req/s off → on | on / off | p50 ms off → on | p95 ms off → on | p99 ms off → on"
    " | SQL statements / token off → on | checkouts / token off → on | lookups / query (on)"
    " | CPU µs / request off → on | non-2xx + socket errors off / on |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def _f(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def report(r: dict[str, Any]) -> str:
    lines = [
        f"{r['rounds']} alternated rounds of {r['seconds']} s per setting and phase; {r['users']:,} users and"
        f" {r['clients']:,} clients, half password and half client_credentials grants; argon2id t=1,"
        f" m={r['argon2_kib']} KiB for every account.",
    ]
    commands: list[str] = []
    for backend in ("sqlite", "postgresql"):
        if backend not in r:
            continue
        phases = [("", f"closed loop, wrk c={r['connections']}")]
        if r.get("rate"):
            phases.append(("_paced", f"paced at ~{r['rate']} req/s over 16 connections"))
        for suffix, title in phases:
            off, on = r[backend]["off" + suffix], r[backend]["on" + suffix]
            lines += ["", f"**{backend}, {title}**", "", *_HEADER, *_rows(off, on), "", _summary(off, on)]
            if backend == "sqlite":
                commands.append(f"    {off[0]['command']}")
    return "\n".join([*lines, "", *commands])


def _rows(off: list[dict[str, Any]], on: list[dict[str, Any]]) -> list[str]:
    return [
        f"| {n} | {max(a['load'], b['load']):.1f} | {a['requests_per_s']:,.0f} → {b['requests_per_s']:,.0f}"
        f" | {b['requests_per_s'] / a['requests_per_s']:.2f}× | {a['p50_ms']:.2f} → {b['p50_ms']:.2f}"
        f" | {a['p95_ms']:.2f} → {b['p95_ms']:.2f} | {a['p99_ms']:.2f} → {b['p99_ms']:.2f}"
        f" | {_f(a['sql_per_token'])} → {_f(b['sql_per_token'])}"
        f" | {_f(a['checkouts_per_token'])} → {_f(b['checkouts_per_token'])} | {_f(b['lookups_per_query'])}"
        f" | {_f(a['cpu_us_per_request'], '.0f')} → {_f(b['cpu_us_per_request'], '.0f')}"
        f" | {a['non_2xx'] + a['errors']} / {b['non_2xx'] + b['errors']} |"
        for n, (a, b) in enumerate(zip(off, on, strict=True), 1)
    ]


def _summary(off: list[dict[str, Any]], on: list[dict[str, Any]]) -> str:
    ratios = [b["requests_per_s"] / a["requests_per_s"] for a, b in zip(off, on, strict=True)]
    worse = sum(b["p95_ms"] > a["p95_ms"] for a, b in zip(off, on, strict=True))
    kinds = {
        s: {
            k: statistics.median(x["statements_per_token"].get(k, 0.0) for x in runs)
            for k in runs[0]["statements_per_token"]
        }
        for s, runs in (("off", off), ("on", on))
    }
    p95 = {s: statistics.median(x["p95_ms"] for x in runs) for s, runs in (("off", off), ("on", on))}
    return (
        f"Median on / off req/s {statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f});"
        f" p95 worse with the loader in {worse} of {len(ratios)} rounds (medians {p95['off']:.2f} → {p95['on']:.2f}"
        f" ms); SQL statements per token by kind (medians) off {_kinds(kinds['off'])}, on {_kinds(kinds['on'])}."
    )


def _kinds(k: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in sorted(k.items()) if value) or "none"
