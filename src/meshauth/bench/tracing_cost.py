"""What tracing costs per request, in ns, measured in one run (the paced view: ``bench.tracing``).

``python -m meshauth.bench.tracing_cost [--before REV]`` runs child processes and prints ns per ASGI
request through ``observability.requests.Instrumented`` (a trivial app answering 200 with a body;
the request carries a valid ``traceparent``) for: the code of ``REV`` (before trace context), this
code with export off, and this code with export on (every span recorded and handed to the SDK's
``BatchSpanProcessor`` in front of an exporter that drops them: the SDK's cost without a network).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

REQUESTS = 20_000
REPEAT = 7
HEADERS = [(b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), (b"host", b"x")]


def _measure(export: bool) -> float:
    from meshauth.observability.requests import Instrumented

    if export:
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        from meshauth.observability import otel

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        otel.configure("bench", env={}, exporter=Drop())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = Instrumented(app)
    scope = {"type": "http", "path": "/x", "method": "GET", "headers": HEADERS}

    async def send(_message: Any) -> None:
        return None

    async def calls(target: Any) -> None:
        for _ in range(REQUESTS):
            await target(scope, None, send)

    loop = asyncio.new_event_loop()
    bare = min(timeit.repeat(lambda: loop.run_until_complete(calls(app)), number=1, repeat=REPEAT))
    inst = min(timeit.repeat(lambda: loop.run_until_complete(calls(wrapped)), number=1, repeat=REPEAT))
    return (inst - bare) / REQUESTS * 1e9


def _child(src: Path, export: bool) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
    code = f"from meshauth.bench.tracing_cost import _measure; print(_measure({export}))"
    if not (src / "meshauth" / "bench" / "tracing_cost.py").exists():  # an older tree: this module's copy
        module = Path(__file__).read_text().replace('if __name__ == "__main__":', "if False:")
        code = module + f"\nprint(_measure({export}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import argparse

    from meshauth.bench.tracing import _tree_at

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", default="")
    args = parser.parse_args()
    here = Path(__file__).parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        before = _tree_at(args.before, Path(tmp)) if args.before else None
        rows: dict[str, list[float]] = {}
        for _ in range(3):  # interleaved, so drift spreads over all three
            if before is not None:
                rows.setdefault(f"before ({args.before})", []).append(_child(before, False))
            rows.setdefault("export off", []).append(_child(here, False))
            rows.setdefault("export on (spans dropped)", []).append(_child(here, True))
    print("| case | Instrumented minus bare app, ns per request (3 runs, min of 7 each) |\n|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {' / '.join(f'{v:,.0f}' for v in values)} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
