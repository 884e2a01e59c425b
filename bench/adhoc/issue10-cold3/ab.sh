#!/bin/bash
# Interleaved A/B of the cold row (plain mode, 8 s at 3,000 req/s, 3 s warm-up) — all rounds under one lock.
for r in 1 2 3; do
  for v in vk tbl tbl-noaudit; do
    tree=${v%-noaudit}; extra=""; [ "$v" = tbl-noaudit ] && extra="MESHAUTH_AUDIT_ENABLED=false"
    echo "=== round $r $v $(date -u +%H:%M:%S) $(cat /proc/loadavg)"
    (cd /tmp/cold3/$tree && env PYTHONPATH=/tmp/cold3/$tree/src /work/main/.venv/bin/python /tmp/cold3/prof.py 8 plain $extra 2>&1 | grep -E '^\{|^thread|decisions_total|xadd|evaluations?",')
  done
done
