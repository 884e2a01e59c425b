#!/bin/bash
source "${1:?usage: rerun.sh <bench dir>/env.sh}"
uptime
run() { echo "=== $1"; bash -c "$2" 2>&1 | grep -E "^PCT (50|95) |^HARNESS|^STATUS"; }
run authn_http 'PACE_MEAN_MS=10.000 taskset -c 1 wrk -t1 -c30 -d4s -s $HARNESS_LUA -H "authorization: Bearer $TOKEN" $AUTHN_URL/ext_authz/R0/r0'
run policy_single 'PACE_MEAN_MS=30.000 HARNESS_LINES=$BENCH_DIR/single.lines taskset -c 1 wrk -t1 -c30 -d4s -s $HARNESS_LUA $POLICY_URL'
run zipf_mixed 'PACE_MEAN_MS=10.000 HARNESS_LINES=$BENCH_DIR/zipf_users-4.lines HARNESS_TOKENS=$BENCH_DIR/users.tokens taskset -c 1 wrk -t1 -c30 -d4s -s $HARNESS_LUA $AUTHZ_URL'
run authz_warm 'PACE_MEAN_MS=10.000 taskset -c 1 wrk -t1 -c30 -d4s -s $HARNESS_LUA -H "authorization: Bearer $TOKEN" $AUTHZ_URL/ext_authz/R0/r0'
echo "=== authn_grpc"
taskset -c 1 h2load -t1 -c4 -m8 -D4 -d $BENCH_DIR/check.bin --rps=250 -H "content-type: application/grpc" -H "te: trailers" --log-file=$BENCH_DIR/h2load-rerun.log $GRPC_URL/envoy.service.auth.v3.Authorization/Check | grep -E "requests:"
/work/main/.venv/bin/python -c "
xs=sorted(int(l.split()[2])/1000 for l in open('$BENCH_DIR/h2load-rerun.log') if l.strip())
n=len(xs); print('p50', xs[n//2], 'p95', xs[int(n*0.95)])"
uptime
