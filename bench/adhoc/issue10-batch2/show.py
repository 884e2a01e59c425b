"""Summarise a ``meshauth.bench.client batch`` result file (the first JSON document in it)."""
import json
import sys

for path in sys.argv[1:]:
    text = open(path).read()
    d, _ = json.JSONDecoder().raw_decode(text)
    r = d.get("batch", d)
    print(path)
    for m in ("single", "batched", "explicit"):
        if m in r:
            x = r[m]
            print(f"  {m:9s} client {x['client_us_per_decision']:6.1f} us  service {x['server_us_per_decision']:6.1f} us"
                  f"  {x['decisions_per_s']:7.0f}/s  path {x['decisions_per_path_cpu_s']:7.0f}/cpu-s  errors {x['errors']}")
    for k, v in r.items():
        if k.startswith("ratio"):
            print(f"  {k}: {v if not isinstance(v, float) else round(v, 2)}")
