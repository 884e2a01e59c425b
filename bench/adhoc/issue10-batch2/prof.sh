#!/bin/bash
# usage: prof.sh MODE OUTPREFIX — the client benchmark's batch part in one mode, py-spy (Python
# frames, idle excluded) on the client process and on the service's worker; run under the lock.
cd "$(dirname "$0")/../../.."
PYTHONPATH=$PWD/src /work/main/.venv/bin/python -m meshauth.bench.client batch --uvloop --seconds 12 --rounds 1 --modes $1 > $2.json 2> $2.err &
BP=$!
for i in $(seq 100); do grep -q "service pid" $2.err 2>/dev/null && break; sleep 0.2; done
SP=$(grep "service pid" $2.err | awk '{print $4}')
sleep 4
/work/main/.venv/bin/py-spy record --nonblocking -r 250 -d 6 --format raw -o $2.client.txt --pid $BP >/dev/null 2>&1 &
/work/main/.venv/bin/py-spy record --nonblocking -r 250 -d 6 --format raw -o $2.service.txt --pid $(cat /proc/$SP/task/*/children | head -1) >/dev/null 2>&1 &
wait
