#!/bin/bash
# A/B/C, same harness (split row included), alternated:
#   old  = HEAD 0f4c201 client (L2 write: a pipeline of SETs per loop turn)
#   new  = L2 write: one EVALSHA, fills coalesced for up to 5 ms; L1 lookup inline
#   wait = new + the gate's BatchConfig(max_wait=0.005) instead of 0.002
cd /tmp/cc
for r in 1 2; do for v in old new wait; do
  echo "=== round $r variant $v $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  mkdir -p /tmp/cc/run_$v && cd /tmp/cc/run_$v
  PYTHONPATH=/tmp/cc/ab_$v/src /work/main/.venv/bin/python -m meshauth.bench.authz --seconds 5 2>&1 | tail -30
  cd /tmp/cc
done; done
echo "=== end $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
