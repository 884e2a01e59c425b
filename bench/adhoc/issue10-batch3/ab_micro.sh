#!/bin/bash
# usage: ab_micro.sh BASE_SRC NEW_SRC [PAIRS] — check_micro.py alternated between two source trees, under the lock.
cd "$(dirname "$0")/../../.."
for i in $(seq ${3:-3}); do
  for t in "$1" "$2"; do
    echo -n "$t: "; flock /tmp/meshauth-bench.lock env PYTHONPATH=$t /work/main/.venv/bin/python bench/adhoc/issue10-batch3/check_micro.py
  done
done
uptime
