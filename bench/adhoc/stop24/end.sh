#!/bin/bash
# The end-of-stop headline runs (stops 24, 25), one after another under the bench lock; logs in $1 (default bench/results/stop24-end/).
cd "$(dirname "$0")/../../.." || exit 1
out=${1:-bench/results/stop24-end}; mkdir -p $out  # stop 25: bench/adhoc/stop24/end.sh bench/results/stop25-end
run() { name=$1; shift; echo "== $(date -u +%H:%M:%S) $name: $*" | tee -a $out/index.log; flock /tmp/meshauth-bench.lock "$@" > $out/$name.log 2>&1; echo "   rc $? load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $out/index.log; }
run authz .venv/bin/meshauth bench auth --authz --seconds 8
run batch .venv/bin/python -m meshauth.bench.client batch --uvloop --seconds 4 --rounds 3
run zipf .venv/bin/python -m meshauth.bench.client zipf --uvloop
run activation .venv/bin/python -m meshauth.bench.client activation invalidation --uvloop --rounds 3
run issue11 .venv/bin/meshauth bench policy --coalesce --interleave 4 --seconds 3 --priority
run authz-2 .venv/bin/meshauth bench auth --authz --seconds 8
