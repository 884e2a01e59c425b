#!/bin/bash
# usage: run_all.sh BASE_SRC NEW_SRC OUTDIR — under one hold of the bench lock: the client benchmark's
# batch part (3 rounds × 4 s, modes interleaved) on NEW then BASE, scope-only store then the
# Cedar-decided one (--policies conditioned); load average logged around each run.
out=$(realpath -m "$3"); mkdir -p "$out"
for pol in scope conditioned; do
  for t in new base; do
    src=$2; [ $t = base ] && src=$1
    echo "$(date -u +%H:%M:%S) $t $pol start load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/log.txt"
    env PYTHONPATH=$src /work/main/.venv/bin/python -m meshauth.bench.client batch --uvloop --seconds 4 --rounds 3 \
      --policies $pol > "$out/$t-$pol.json" 2>> "$out/err.txt"
    echo "$(date -u +%H:%M:%S) $t $pol end load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/log.txt"
  done
done
