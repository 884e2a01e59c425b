"""Per-variant medians of an ab.sh log: gate / policy / Valkey / core 0 µs per request, checks per call, p95, rate."""
import json, re, statistics as st, sys
rows = {}
cur = None
for line in open(sys.argv[1]):
    m = re.match(r"=== round (\d+) (\S+)", line)
    if m:
        cur = m.group(2); continue
    if line.startswith("{") and cur:
        rows.setdefault(cur, []).append(json.loads(line))
for v, rs in rows.items():
    f = lambda k: [r["cpu"][k] for r in rs]
    print(f"{v:6} n={len(rs)} gate {st.median(f('gate')):.1f} {[round(x) for x in f('gate')]} policy {st.median(f('policy')):.1f} "
          f"valkey {st.median(f('valkey')):.1f} core0 {st.median([r['core0'] for r in rs]):.1f} "
          f"cpc {st.median([r['checks_per_call'] for r in rs]):.2f} p95 {st.median([r['p95'] for r in rs]):.2f} "
          f"rate {st.median([r['rate'] for r in rs]):.0f} non2xx {sum(r['non2xx'] for r in rs)}")
