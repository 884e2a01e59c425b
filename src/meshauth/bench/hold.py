"""``python -m meshauth.bench.hold [--quick]``: the harness's stack, held up so that a command line
recorded in ``bench/results/*.json`` (or ``bench/REPORT.md``) can be rerun by hand, exactly.

It starts and seeds the same stack with the same placement (``bench.stack``: services on core 0), writes
the same request files from the same seeds (``single.lines``, ``batch.lines``, ``check.bin``, every
``zipf_users-<n>.lines`` the plan uses, ``users.tokens``), runs the same warm-up as the harness (the
policy service's compiled subsets and the warm caches; then the Zipf workload at 3,000 req/s for the
plan's warm-up seconds, file 0), and writes ``env.sh`` exporting what a recorded command refers to
(``$POLICY_URL``, ``$AUTHN_URL``, ``$AUTHZ_URL``, ``$GRPC_URL``, ``$QUIET_URL``, ``$BENCH_DIR``,
``$HARNESS_LUA``, ``$TOKEN``, ``$POLICY_PID``). Then, in another shell::

    source <dir>/env.sh
    flock /tmp/meshauth-bench.lock <recorded command>

Ctrl-C stops everything. Tokens live four hours (user tokens) or the service's access-token lifetime.
"""

from __future__ import annotations

import argparse
import shlex
import signal
from pathlib import Path

from meshauth.bench import harness, probe, scenarios, stack, workload


def env_file(s: stack.Stack) -> str:
    """``env.sh``: one export per placeholder a recorded command uses."""
    values = {var.lstrip("$"): value for value, var in harness.placeholders(s).items() if not var.startswith("--")}
    values["POLICY_PID"] = str(s.pids["policy"])
    values["TOKEN"] = s.tokens[0]
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(values.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the --quick plan's request files and warm-up")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up (a cold-start rerun)")
    args = parser.parse_args(argv)
    plan = scenarios.QUICK if args.quick else scenarios.FULL
    sizes = workload.Sizes()
    with stack.started(sizes) as s:
        probe.probe(s)
        built = scenarios.build(s, plan, sizes)
        for n in range(scenarios.zipf_runs(plan)):
            scenarios.zipf_file(s.root, n, plan, sizes)
        if not args.no_warmup:
            harness.warm_up(s, built)
            zipf = next(sc for sc in built if sc.name == "zipf_mixed")
            zipf.drive(scenarios.ZIPF_WARMUP_RATE, zipf.warmup)  # file zipf_users-0, as the harness's warm-up
        env = Path(s.root) / "env.sh"
        env.write_text(env_file(s))
        print(f"policy service  {s.policy_url}  (pid {s.pids['policy']})")
        print(f"gate authn      {s.authn_url}  (gRPC {s.grpc_url}); without auditing {s.quiet_url}")
        print(f"gate authz      {s.authz_url}")
        print(f"request files in {s.root}; processes: {s.pids}")
        print(f"warm-up: {'skipped' if args.no_warmup else 'done'}. In another shell:  source {env}")
        print("Ctrl-C stops everything.", flush=True)
        stop = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # delivered to sigwait, not as KeyboardInterrupt
        signal.sigwait(stop)


if __name__ == "__main__":
    main()
