"""Issue 12 (audit5) scratch: instruction counts of the gate's audit hook and of one flush's service-side work.

    valgrind --tool=callgrind --callgrind-out-file=OUT python bench/adhoc/issue12-5/cg_hook.py MODE N
MODE: none (setup only), hook (N AuthAudit.gate calls), take (N hook calls, then _take + _packed of the
buffer in flushes of 150). Compare totals between modes (N fixed) for per-call costs.
"""

import sys

from meshauth.auth.audit_hooks import AuthAudit
from meshauth.bus.producer import Producer, ProducerConfig

mode, n = sys.argv[1], int(sys.argv[2])
p = Producer("redis://127.0.0.1:1/0", ProducerConfig(gauge_interval=0))
a = AuthAudit(p)
headers = (("x-meshauth-subject", "bench-client"), ("x-meshauth-client-id", "bench-client"), ("x-meshauth-scope", ""))
for _ in range(200):  # warm: the partition memory, the encoder
    a.gate(200, headers, "", "http", "/ext_authz/orders/42")
p._buffer.clear()


def calls(hook, k):
    for _ in range(k):
        hook(200, headers, "", "http", "/ext_authz/orders/42")


if mode in ("hook", "take"):
    calls(a.gate, n)
elif mode == "off":  # the call itself: a hook without a producer returns at once
    calls(AuthAudit(None).gate, n)
if mode == "take":
    while p._buffer:
        recs = p._take(150)
        p._writer._packed([k for k, _ in recs], recs)
print(mode, n, len(p._buffer))
