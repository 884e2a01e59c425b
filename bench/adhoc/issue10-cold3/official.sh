#!/bin/bash
# Official bench, three trees, each under the lock; order given as args.
for v in "$@"; do
  cd /tmp/cold3/$v
  echo "=== $v $(date -u +%H:%M:%S) $(uptime)"
  flock /tmp/meshauth-bench.lock bash -c "echo \"lock acquired \$(date -u +%H:%M:%S) \$(uptime)\"; env PYTHONPATH=/tmp/cold3/$v/src /work/main/.venv/bin/python -m meshauth bench auth --authz --seconds 8"
  echo "=== end $v $(date -u +%H:%M:%S) $(uptime)"
done
