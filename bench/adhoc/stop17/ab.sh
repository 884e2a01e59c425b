#!/bin/bash
for r in 1 2; do for v in old new; do
  echo "=== round $r variant $v $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  mkdir -p /tmp/abrun_$v && cd /tmp/abrun_$v
  PYTHONPATH=/tmp/ab_$v/src /work/main/.venv/bin/python -m meshauth.bench.authz --seconds 5 2>&1 | tail -14
done; done
