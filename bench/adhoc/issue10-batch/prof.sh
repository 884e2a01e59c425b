#!/bin/bash
# usage: prof.sh MODE OUTPREFIX
cd /work/wt-batch
PYTHONPATH=$PWD/src /work/main/.venv/bin/python -m meshauth.bench.client batch --uvloop --seconds 14 --rounds 1 --modes $1 > $2.json 2> $2.err &
BP=$!
for i in $(seq 100); do grep -q "service pid" $2.err 2>/dev/null && break; sleep 0.2; done
SP=$(grep "service pid" $2.err | awk '{print $4}')
sleep 4
/tmp/pyspy/bin/py-spy record --nonblocking -r 250 -d 7 --format raw -o $2.client.txt --pid $BP >/dev/null 2>&1 &
/tmp/pyspy/bin/py-spy record --nonblocking --native -r 200 -d 7 --format raw -o $2.service.txt --pid $(cat /proc/$SP/task/*/children | head -1) >/dev/null 2>&1 &
wait
