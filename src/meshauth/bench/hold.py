"""``python -m meshauth.bench.hold [--quick]``: start and seed the harness's stack, write the request files,
print the URLs, a token and the files, and keep it all running until Ctrl-C, so a recorded command line
from ``bench/results/*.json`` can be rerun by hand (under ``flock /tmp/meshauth-bench.lock``)."""

from __future__ import annotations

import argparse
import signal

from meshauth.bench import probe, scenarios, stack, workload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the --quick plan's request files")
    args = parser.parse_args(argv)
    sizes = workload.Sizes()
    with stack.started(sizes) as s:
        probe.probe(s)
        scenarios.build(s, scenarios.QUICK if args.quick else scenarios.FULL, sizes)
        print(f"policy service  {s.policy_url}")
        print(f"gate authn      {s.authn_url}  (gRPC {s.grpc_url})")
        print(f"gate authz      {s.authz_url}")
        print(f"TOKEN={s.tokens[0]}")
        print(f"request files in {s.root} (zipf_gate-<n>.lines are written per run; write more with")
        print("  meshauth.bench.workload.zipf_gate_lines); processes:", s.pids)
        print("Ctrl-C stops everything.", flush=True)
        stop = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # delivered to sigwait, not as KeyboardInterrupt
        signal.sigwait(stop)


if __name__ == "__main__":
    main()
