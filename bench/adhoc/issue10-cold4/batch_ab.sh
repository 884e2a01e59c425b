#!/bin/bash
# The client benchmark's batch part (3 rounds × 4 s, modes interleaved) for each tree in turn (args:
# tree names in /tmp/client4/trees), PASSES times; run the whole script under the lock. Out: OUTDIR.
out=$(realpath -m "${OUTDIR:-bench/results/client4/batch}"); mkdir -p "$out"
for p in $(seq ${PASSES:-1}); do
  for t in "$@"; do
    echo "$(date -u +%H:%M:%S) pass $p $t start load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/log.txt"
    (cd /tmp/client4/trees/$t && env PYTHONPATH=/tmp/client4/trees/$t/src /work/main/.venv/bin/python -m meshauth.bench.client batch --uvloop --seconds 4 --rounds 3 > "$out/$t-$p.json" 2>> "$out/err.txt")
    echo "$(date -u +%H:%M:%S) pass $p $t end load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/log.txt"
  done
done
