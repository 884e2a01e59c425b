"""Summarise the client benchmark's batch-part result files: µs per decision and ratios."""
import json, sys
for f in sys.argv[1:]:
    t = open(f).read()
    if not t.strip():
        print(f, "empty"); continue
    d = json.loads(t[: t.index("\n}\n") + 3])["batch"]
    row = [f.split("/")[-1], d["policies"]]
    for m in ("single", "batched", "explicit"):
        if m in d:
            row.append(f"{m} {d[m]['client_us_per_decision']:.1f}+{d[m]['server_us_per_decision']:.1f}")
    for k in ("ratio_path_cpu", "ratio_path_cpu_explicit"):
        if k in d:
            row.append(f"{k} {d[k]:.2f} rounds {[round(x, 2) for x in d[k.replace('ratio_path_cpu', 'ratio_path_cpu_per_round')]]}")
    print(" | ".join(row))
