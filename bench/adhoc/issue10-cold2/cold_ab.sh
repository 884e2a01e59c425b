#!/bin/bash
# Cold authz at ${RATE:-3000} req/s offered for ${SECONDS_:-8} s (L2 ${L2:-on}; the bench's setup and placement via
# ./prof.py: CPU, system CPU and context switches per thread per request from /proc), variants (name=source tree)
# alternated over ${ROUNDS:-2} rounds, all in one hold of the bench lock.
# Run: flock /tmp/meshauth-bench.lock bench/adhoc/issue10-cold2/cold_ab.sh a=/tree b=/tree
here=$(cd "$(dirname "$0")" && pwd)
for r in $(seq 1 ${ROUNDS:-2}); do for v in "$@"; do
  name=${v%%=*}; tree=${v#*=}
  echo "=== round $r variant $name $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  PYTHONPATH=$tree/src /work/main/.venv/bin/python $here/prof.py cold ${RATE:-3000} ${SECONDS_:-8} /tmp/coldab2_$name ${L2:-on} 2>&1 | grep -v "^  gc" | tail -14 | sed 's/command=.*rate=/rate=/'
done; done
echo "=== end $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
