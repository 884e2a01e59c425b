#!/bin/bash
# usage: [BASE_ARGS=..] [NEW_ARGS=..] ab.sh BASE_TREE NEW_TREE OUTDIR [PAIRS] — the client benchmark's
# batch part (all three modes, one round each) alternated between two trees (or two argument sets),
# PAIRS times; run under the lock. Load average logged.
base=$1; new=$2; out=$3; pairs=${4:-3}
out=$(realpath -m "$out"); mkdir -p "$out"
for i in $(seq "$pairs"); do
  for t in base new; do
    tree=$base; args=$BASE_ARGS
    [ $t = new ] && tree=$new && args=$NEW_ARGS
    echo "$(date -u +%H:%M:%S) $t $i load $(cut -d' ' -f1-3 /proc/loadavg) $args" >> "$out/log.txt"
    (cd "$tree" && PYTHONPATH=$tree/src /work/main/.venv/bin/python -m meshauth.bench.client batch --uvloop \
      --seconds 4 --rounds 1 $args > "$out/$t-$i.json" 2>/dev/null)
  done
done
echo "$(date -u +%H:%M:%S) end load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/log.txt"
