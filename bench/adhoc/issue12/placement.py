"""Issue 12, the harness's bus row: where the audit worker (and Valkey) sit, measured in one run.

The harness's stack (``bench.stack``, small workload) with its audited authn gate, its unaudited
one and its audit worker; the warm authn check paced at RATE for SECONDS, ROUNDS rounds. Each round
measures the gate with auditing off once and on in each placement, the order rotated per round:

- ``on_c0``: the harness as it is — audit worker and Valkey on core 0 with the gates;
- ``on_worker_c1``: the audit worker moved (every thread, ``taskset -a``) to the load generator's
  core 1; Valkey stays on core 0;
- ``on_apart``: audit worker and Valkey both on core 1 (as in production: neither is on the gate's host).

Usage (under the benchmark lock): python bench/adhoc/issue12/placement.py [ROUNDS] [RATE] [SECONDS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict

from meshauth.bench import drivers, workload
from meshauth.bench.client_setup import tree_cpu
from meshauth.bench.loadgen import CLIENT_CORE, SERVER_CORE, idle_poll
from meshauth.bench.stack import audit_rows, started

PLACEMENTS = {
    "on_c0": (SERVER_CORE, SERVER_CORE),  # (worker core, valkey core)
    "on_worker_c1": (CLIENT_CORE, SERVER_CORE),
    "on_apart": (CLIENT_CORE, CLIENT_CORE),
}
MODES = ("off", *PLACEMENTS)


def pin(pid: int, core: str) -> None:
    subprocess.run(["taskset", "-a", "-cp", core, str(pid)], check=True, capture_output=True)  # noqa: S603, S607


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 8
    out: dict[str, list[dict[str, object]]] = {m: [] for m in MODES}
    with started(workload.Sizes(users=200, resources=200, clients=2)) as s:
        headers = {"authorization": f"Bearer {s.tokens[0]}"}
        worker, valkey = s.pids["audit_worker"], s.pids["valkey"]
        for url in (s.authn_url, s.quiet_url):  # warm both gates
            drivers.wrk(url + workload.gate_path(0), seconds=2, connections=30, rate=rate, headers=headers)
        for i in range(rounds):
            k = i % len(MODES)
            for mode in MODES[k:] + MODES[:k]:
                if mode != "off":
                    worker_core, valkey_core = PLACEMENTS[mode]
                    pin(worker, worker_core)
                    pin(valkey, valkey_core)
                url = (s.quiet_url if mode == "off" else s.authn_url) + workload.gate_path(0)
                pids = {"gate": s.pids["quiet" if mode == "off" else "authn"], "worker": worker, "valkey": valkey}
                before = {k: tree_cpu(p) for k, p in pids.items()}
                with idle_poll():
                    run = drivers.wrk(url, seconds=seconds, connections=30, rate=rate, headers=headers)
                row = asdict(run)
                row["cpu_s"] = {k: tree_cpu(p) - before[k] for k, p in pids.items()}
                row["load_average"] = os.getloadavg()[0]
                row["round"] = i + 1
                out[mode].append(row)
                p = run.percentiles
                print(
                    f"round {i + 1} {mode:13s} achieved {run.achieved:7.0f} p50 {p['50']:.2f} p95 {p['95']:.2f}"
                    f" p99 {p['99']:.2f} ms  cpu gate {row['cpu_s']['gate']:.2f} worker {row['cpu_s']['worker']:.2f}"
                    f" valkey {row['cpu_s']['valkey']:.2f} s  load {row['load_average']:.1f}",
                    flush=True,
                )
        rows = audit_rows(s.database_url)
    print(f"\naudit_log rows stored by the worker: {rows}")
    for mode in PLACEMENTS:
        ratios = sorted(
            float(on["percentiles"]["95"]) / float(off["percentiles"]["95"])  # type: ignore[index]
            for on, off in zip(out[mode], out["off"], strict=True)
        )
        med = {m: statistics.median(float(r["percentiles"]["95"]) for r in out[m]) for m in ("off", mode)}  # type: ignore[index]
        print(
            f"{mode:13s} per-round p95 on/off: median {statistics.median(ratios):.2f}× range {ratios[0]:.2f}–"
            f"{ratios[-1]:.2f}×; median p95 {med[mode]:.2f} vs off {med['off']:.2f} ms ({med[mode] / med['off']:.2f}×)"
        )
    path = f"bench/results/issue12-placement-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    with open(path, "w") as f:
        json.dump({"rate": rate, "seconds": seconds, "rounds": rounds, **out}, f, indent=1)
    print(f"raw: {path}")


if __name__ == "__main__":
    main()
