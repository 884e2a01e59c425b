#!/bin/bash
# The harness's stack held up (bench.hold --quick), bench.batch_path against it (as the harness runs it), then stop.
cd /work/wt-batch
export PYTHONPATH=$PWD/src
/work/main/.venv/bin/python -m meshauth.bench.hold --quick > /tmp/hold.out 2> /tmp/hold.err &
HP=$!
for i in $(seq 600); do grep -q "Ctrl-C stops" /tmp/hold.out 2>/dev/null && break; sleep 1; done
ENV=$(grep -o "source .*env.sh" /tmp/hold.out | awk '{print $2}')
source $ENV
echo "POLICY_URL=$POLICY_URL POLICY_PID=$POLICY_PID" 
uptime
taskset -c 1 /work/main/.venv/bin/python -m meshauth.bench.batch_path --url $POLICY_URL --pid $POLICY_PID --seconds 4 --rounds 3 > /tmp/bp.json
uptime
kill -INT $HP; wait $HP
