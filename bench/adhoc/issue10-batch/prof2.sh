#!/bin/bash
# usage: prof2.sh MODE OUTPREFIX  (native profile of the service worker)
cd /work/wt-batch
PYTHONPATH=$PWD/src /work/main/.venv/bin/python -m meshauth.bench.client batch --uvloop --seconds 14 --rounds 1 --modes $1 > $2.json 2> $2.err &
for i in $(seq 100); do grep -q "service pid" $2.err 2>/dev/null && break; sleep 0.2; done
SP=$(grep "service pid" $2.err | awk '{print $4}')
sleep 4
W=$(cat /proc/$SP/task/*/children | head -1)
echo "worker $W" > $2.spy.log
/tmp/pyspy/bin/py-spy record --native -r 200 -d 7 --format raw -o $2.service.txt --pid $W >> $2.spy.log 2>&1
wait
