#!/bin/bash
# Same-run A/B of `python -m meshauth.bench.authz --seconds 5` over source trees given as name=path,
# alternated, each run under the bench lock on its own (a run is ~2 min). Output in /tmp/coldab/<name>_<round>.
out=/tmp/coldab; mkdir -p $out
for r in 1 2; do for v in "$@"; do
  name=${v%%=*}; tree=${v#*=}
  mkdir -p $out/${name}_$r && cd $out/${name}_$r
  flock /tmp/meshauth-bench.lock sh -c "echo \"=== round $r variant $name \$(date -u +%H:%M:%S) load: \$(cut -d' ' -f1-3 /proc/loadavg)\"; PYTHONPATH=$tree/src /work/main/.venv/bin/python -m meshauth.bench.authz --seconds 5 2>&1 | tail -16; echo \"=== end \$(date -u +%H:%M:%S) load: \$(cut -d' ' -f1-3 /proc/loadavg)\""
done; done
