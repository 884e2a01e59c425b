#!/bin/bash
cd "$(dirname "$0")"
PY=/work/main/.venv/bin/python
for cores in 0 0,1; do
HOLD_MS=2 taskset -c $cores $PY -m granian --interface asgi --workers 1 --port 18778 --no-ws --loop uvloop granian_after_send_app:app > /dev/null 2>&1 &
SP=$!
sleep 3
echo "server cores $cores"
$PY - <<'PY'
import http.client, time, statistics
c = http.client.HTTPConnection("127.0.0.1", 18778)
def lat(path, n=200):
    out=[]
    for _ in range(n):
        t=time.perf_counter(); c.request("GET", path); r=c.getresponse(); r.read(); out.append((time.perf_counter()-t)*1000)
        time.sleep(0.004)
    return round(statistics.median(out),3)
for _ in range(2):
    print({p: lat(p) for p in ("/plain", "/hold", "/yield", "/soon", "/soon2", "/later")})
PY
kill $SP; wait $SP 2>/dev/null
done
