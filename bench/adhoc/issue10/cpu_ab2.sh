#!/bin/bash
# Gate / policy / Valkey CPU per cold request at 3,000 req/s offered (8 s, L2 on), variants alternated.
cd /tmp/cc
for r in 1 2; do for v in old new wait; do
  echo "=== round $r variant $v $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  PYTHONPATH=/tmp/cc/ab_$v/src /work/main/.venv/bin/python /tmp/cc/prof.py cold 3000 8 /tmp/cc/cpu_$v on 2>&1 | tail -9 | sed 's/command=.*rate=/rate=/'
done; done
echo "=== end $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
