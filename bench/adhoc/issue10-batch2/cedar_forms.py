"""cedarpy's ``is_authorized_batch`` per request (64 per call, the benchmark's 2-policy set, no
entities) with requests in different forms, alternated, best of 5: is any form cheaper?"""
import time

from cedarpy import _internal as I

pol = I.PolicySet.from_str('''@id("view-all") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);''')
ents = I.Entities.from_json_str("[]", None)
N = 64


def dicts(r):
    return [{"principal": {"type": "User", "id": f"u{r}-{k}"}, "action": {"type": "Action", "id": "view"},
             "resource": {"type": "Doc", "id": f"d{k}"}} for k in range(N)]


def strings(r):
    return [{"principal": f'User::"u{r}-{k}"', "action": 'Action::"view"', "resource": f'Doc::"d{k}"'} for k in range(N)]


def ctx_str(r):
    return [dict(d, context="{}") for d in dicts(r)]


forms = {"dicts": dicts, "strings": strings, "context str": ctx_str}
data = {name: [f(r) for r in range(20)] for name, f in forms.items()}
best = {name: 1e9 for name in forms}
R = 300
for _ in range(5):
    for name in forms:
        rs = data[name]
        t = time.process_time()
        for i in range(R):
            I.is_authorized_batch(rs[i % 20], pol, ents, None, False)
        best[name] = min(best[name], (time.process_time() - t) / R / N * 1e6)
for name, us in best.items():
    print(f"{name:14s} {us:.2f} us/request")
raw = I.is_authorized_batch(dicts(0)[:1], pol, ents, None, False)
print(raw, len(raw[0]))
