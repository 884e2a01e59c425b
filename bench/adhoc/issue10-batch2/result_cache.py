"""cedar.authorize's answer decoding: msgspec decode of each engine answer vs the answer cache keyed
by the text without its metrics (cedar._result), on real engine output (64 per call)."""
import timeit

import msgspec
from cedarpy import _internal as I

from meshauth.policy import cedar

pol = I.PolicySet.from_str('''@id("view-all") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);''')
ents = I.Entities.from_json_str("[]", None)
reqs = [{"principal": {"type": "User", "id": f"u{k}"}, "action": {"type": "Action", "id": "view"},
         "resource": {"type": "Doc", "id": f"d{k}"}} for k in range(64)]
raw = I.is_authorized_batch(reqs, pol, ents, None, False)
dec = msgspec.json.Decoder(cedar.Result)
n = 2000
plain = min(timeit.repeat(lambda: [dec.decode(r) for r in raw], number=n, repeat=5)) / n / 64 * 1e6
cached = min(timeit.repeat(lambda: [cedar._result(r) for r in raw], number=n, repeat=5)) / n / 64 * 1e6
call = min(timeit.repeat(lambda: I.is_authorized_batch(reqs, pol, ents, None, False), number=200, repeat=5)) / 200 / 64 * 1e6
print(f"decode each {plain:.3f} us, cached {cached:.3f} us per answer; engine call {call:.2f} us per request")
C = {}
def pre(r):
    k = r[: r.find(',"metrics":{')]
    f = C.get(k)
    if f is None:
        f = C[k] = dec.decode(r)
    return f
prefix = min(timeit.repeat(lambda: [pre(r) for r in raw], number=n, repeat=5)) / n / 64 * 1e6
print(f"prefix-only key {prefix:.3f} us per answer")
