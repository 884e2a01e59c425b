"""meshauth.bench.authz_warm (from the tree on PYTHONPATH) with the services run from SERVICE_SRC."""
import json, os, sys, time
from pathlib import Path
service_src = sys.argv[1]
os.environ["PYTHONPATH"] = service_src
from meshauth.bench import authz_warm
r = authz_warm.run(rate=3000, seconds=int(sys.argv[3]), connections=30, rounds=int(sys.argv[2]))
r["service_src"] = service_src
out = Path(sys.argv[4]); out.write_text(json.dumps(r, indent=2))
print(authz_warm.report(r))
