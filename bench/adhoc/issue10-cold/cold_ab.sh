#!/bin/bash
# Cold authz at 3,000 req/s offered for 8 s (L2 on; the bench's setup and placement via ../issue10/prof.py),
# gate / policy / Valkey CPU per request from /proc, variants (name=source tree) alternated over two rounds,
# all in one hold of the bench lock. Run: flock /tmp/meshauth-bench.lock bench/adhoc/issue10-cold/cold_ab.sh a=/tree b=/tree
here=$(cd "$(dirname "$0")" && pwd)
for r in 1 2; do for v in "$@"; do
  name=${v%%=*}; tree=${v#*=}
  echo "=== round $r variant $name $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  PYTHONPATH=$tree/src /work/main/.venv/bin/python $here/../issue10/prof.py cold ${RATE:-3000} ${SECONDS_:-8} /tmp/coldab_$name ${L2:-on} 2>&1 | tail -12 | sed 's/command=.*rate=/rate=/'
done; done
echo "=== end $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
