#!/bin/bash
# Interleaved A/B of the cold row (plain mode, 8 s at 3,000 req/s, 3 s warm-up), 3 rounds; run the whole
# script under the lock. Args: variants, each a tree name in /tmp/cold3 (git archive'd), optionally
# suffixed -noaudit (the policy service with MESHAUTH_AUDIT_ENABLED=false). Default: vk tbl tbl-noaudit.
variants=("$@"); [ ${#variants[@]} -eq 0 ] && variants=(vk tbl tbl-noaudit)
for r in 1 2 3; do
  for v in "${variants[@]}"; do
    tree=${v%-noaudit}; extra=""; [ "$v" != "$tree" ] && extra="MESHAUTH_AUDIT_ENABLED=false"
    echo "=== round $r $v $(date -u +%H:%M:%S) $(cat /proc/loadavg)"
    (cd /tmp/cold3/$tree && env PYTHONPATH=/tmp/cold3/$tree/src /work/main/.venv/bin/python "$(dirname "$0")/prof.py" 8 plain $extra 2>&1 | grep -E '^\{|^thread|decisions_total|xadd|evaluations?",')
  done
done
