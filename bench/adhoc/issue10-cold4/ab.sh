#!/bin/bash
# Interleaved A/B of the bench's cold row (prof.py 8 plain [idle]), ROUNDS rounds (default 3); run the
# whole script under the lock. Args: tree names in /tmp/client4/trees (git archive'd copies).
# IDLE=1: the bench's idle-poll spinners during each measured run.
here=$(cd "$(dirname "$0")" && pwd)
for r in $(seq 1 "${ROUNDS:-3}"); do
  for v in "$@"; do
    echo "=== round $r $v $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd /tmp/client4/trees/$v && env PYTHONPATH=/tmp/client4/trees/$v/src /work/main/.venv/bin/python "$here/prof.py" 8 plain ${IDLE:+idle} 2>&1 | grep -E '^\{|Error|error' | tail -3)
  done
done
