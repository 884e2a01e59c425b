"""Where benchmark results go: one JSON file per run under bench/results/ (git-ignored)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("bench/results")


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    return path


def paced_main(
    name: str, description: str | None, run: Callable[..., dict[str, Any]], report: Callable[[dict[str, Any]], str]
) -> None:
    """``python -m meshauth.bench.<name>``: the paced benchmarks' own command line (rate, seconds,
    connections), the same as ``meshauth bench auth [--authz]``."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rate", type=int, default=3000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=30)
    args = parser.parse_args()
    result = run(rate=args.rate, seconds=args.seconds, connections=args.connections)
    save(name, result)
    print(report(result))
