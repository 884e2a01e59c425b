"""Issue 12 scratch A/B: the gate at 3,000 req/s, auditing off / on (this tree) / on (an earlier tree,
given as argv[1], served with PYTHONPATH pointing at it), alternated and rotated, ROUNDS rounds.

    flock /tmp/meshauth-bench.lock nice -n -10 python bench/adhoc/issue12/ab_gate.py BEFORE_SRC [ROUNDS] [SECONDS]
"""

import json
import sys
import time

from meshauth.bench import audit_gate

before = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
audit_gate.MODES["on_before"] = {**audit_gate.ON, "PYTHONPATH": before}
r = audit_gate.run(rate=3000, seconds=seconds, rounds=rounds, modes=("off", "on", "on_before"))
print(audit_gate.report(r))
path = f"bench/results/issue12-ab-gate-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
with open(path, "w") as f:
    json.dump(r, f, indent=1)
print(f"raw: {path}")
