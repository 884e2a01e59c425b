#!/bin/bash
# A/B of the cold row: trees alternate; prof.py from main (adhoc), services from each tree's src.
cd /work/main
for r in $(seq 1 ${ROUNDS:-3}); do
  for t in ${TREES:-base new}; do
    echo "=== round $r $t"
    PYTHONPATH=/work/wt-$t/src flock /tmp/meshauth-bench.lock /work/main/.venv/bin/python bench/adhoc/stop23/prof.py ${SECS:-8} plain ${MODE:-idle} "$@" 2>&1 | tail -1
  done
done
