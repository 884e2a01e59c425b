"""Issue 12 (audit2) scratch A/B: the gate at 3,000 req/s, auditing off and on for this tree and for
other trees (``name=SRC`` arguments: served with PYTHONPATH at SRC), and this tree with extra settings
(``name=ENV:VALUE,...``), rotated per round; the benchmark is this tree's ``audit_gate`` (its Valkey).

    flock /tmp/meshauth-bench.lock python bench/adhoc/issue12-2/ab.py ROUNDS SECONDS [name=SRC | name=@K:V,K:V]...
"""

import json
import sys
import time

from meshauth.bench import audit_gate

rounds, seconds = int(sys.argv[1]), int(sys.argv[2])
modes = ["off", "on"]
for arg in sys.argv[3:]:
    name, _, spec = arg.partition("=")
    if spec.startswith("@"):
        audit_gate.MODES[name] = {**audit_gate.ON, **dict(kv.split(":", 1) for kv in spec[1:].split(","))}
    else:
        audit_gate.MODES[name] = {**audit_gate.ON, "PYTHONPATH": spec}
    modes.append(name)
r = audit_gate.run(rate=3000, seconds=seconds, rounds=rounds, modes=tuple(modes))
r["argv"] = sys.argv
print(audit_gate.report(r))
path = f"bench/results/issue12-2-ab-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
with open(path, "w") as f:
    json.dump(r, f, indent=1)
print(f"raw: {path}")
