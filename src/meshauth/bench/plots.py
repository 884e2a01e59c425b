"""The report's PNG plots (matplotlib, headless): latency percentiles against offered load per scenario,
and the latency distribution of every scenario at the reference rate (3,000 req/s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshauth.bench.targets import REFERENCE_RATE

LOAD_PNG = "latency-vs-load.png"
DISTRIBUTION_PNG = "latency-distribution-3000.png"


def draw(r: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write both plots into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")

    scs = r["scenarios"]
    names = list(scs)
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        paced = [p for p in scs[name]["paced"] if p["percentiles"]]
        offered = [p["offered"] for p in paced]
        for q, style in (("50", "o-"), ("95", "s-"), ("99", "^-")):
            ax.plot(offered, [p["percentiles"][q] for p in paced], style, label=f"p{q}")
        ax.set_title(scs[name]["title"], fontsize=10)
        ax.set_xlabel("offered req/s")
        ax.set_ylabel("latency ms")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"Latency percentiles vs offered load (paced wrk / h2load), {r['started']}")
    fig.tight_layout()
    load = out_dir / LOAD_PNG
    fig.savefig(load, dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    for name in names:
        for p in scs[name]["paced"]:
            if p["offered"] == REFERENCE_RATE and p["percentiles"]:
                qs = sorted(p["percentiles"], key=float)
                ax.plot([p["percentiles"][q] for q in qs], [float(q) for q in qs], ".-", label=scs[name]["title"])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(plain)
    ax.set_xlabel("latency ms (log)")
    ax.set_ylabel("percentile")
    ax.set_title(f"Latency distribution at {REFERENCE_RATE:,} req/s offered")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    dist = out_dir / DISTRIBUTION_PNG
    fig.savefig(dist, dpi=90)
    plt.close(fig)
    return [load, dist]
