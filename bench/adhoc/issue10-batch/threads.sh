#!/bin/bash
# usage: threads.sh MODE OUT
cd /work/wt-batch
PYTHONPATH=$PWD/src /work/main/.venv/bin/python -m meshauth.bench.client batch --uvloop --seconds 12 --rounds 1 --modes $1 > $2.json 2> $2.err &
BP=$!
for i in $(seq 100); do grep -q "service pid" $2.err 2>/dev/null && break; sleep 0.2; done
SP=$(grep "service pid" $2.err | awk '{print $4}')
sleep 4
snap() { for p in $SP $(cat /proc/$SP/task/*/children); do for t in /proc/$p/task/*; do echo "$p $(cat $t/comm | tr ' ' _) $(awk '{print $14+$15}' $t/stat)"; done; done; }
snap > $2.t0; sleep 5; snap > $2.t1
wait
join <(awk '{print $1"/"$2"/"NR, $3}' $2.t0 | sort) <(awk '{print $1"/"$2"/"NR, $3}' $2.t1 | sort) | awk '{d=$3-$2; if(d>0) print d, $1}' | sort -rn
