"""Print the rows of the authz bench JSONs written by ab.sh (/tmp/coldab/<variant>_<round>/bench/results)."""
import glob, json, sys
root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/coldab"
for f in sorted(glob.glob(f"{root}/*/bench/results/authz-*.json")):
    d = json.load(open(f))
    print(f.split("/")[3])
    for case in ("floor", "authn", "authz_warm", "authz_cold", "authz_cold_no_l2", "authz_cold_third", "authz_cold_split"):
        for cores, r in (d.get(case) or {}).items():
            if not isinstance(r, dict) or "rate" not in r:
                continue
            cpu = ", ".join(f"{k} {v:.0f}" for k, v in (r.get("cpu_us_per_request") or {}).items())
            print(f"| {case} | {cores} | {r['rate']:.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} | {cpu} |")
