#!/bin/bash
# check_micro.py alternated between source trees (args: SRC dirs), PAIRS rounds; run under the lock.
# MICRO_ARGS: check_micro's flags (sf, cache).
here=$(cd "$(dirname "$0")" && pwd)
for i in $(seq ${PAIRS:-3}); do
  for t in "$@"; do
    echo -n "$t [$MICRO_ARGS]: "; env PYTHONPATH=$t taskset -c 1 /work/main/.venv/bin/python "$here/check_micro.py" $MICRO_ARGS
  done
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
