import json, time, random
from meshauth.policy import cedar
from meshauth.bench import policy_workload as pw
w = pw.build()
ents = cedar.parse_entities(json.dumps(w.entities), None)
pols = w.policies.split("\n@id")
pols = [pols[0]] + ["@id" + p for p in pols[1:]]
def ps(idx): return cedar.parse_policies("\n".join(pols[i] for i in idx))
rng = random.Random(1)
reqs=[]
for _ in range(2000):
    r = pw.random_request(rng)
    t = int(r["resource"]["type"][1:]); a=int(r["action"]["name"][1:])
    reqs.append((t*20+a, cedar.request(("User", r["subject"]["id"]), ("Action", r["action"]["name"]), (r["resource"]["type"], r["resource"]["id"]), None)))
one = {i: ps([i]) for i in set(k for k,_ in reqs)}
N=2000
t0=time.perf_counter()
for k, rq in reqs: cedar.authorize([rq], one[k], ents, None)
t1=time.perf_counter(); print("1 req / 1-policy call: %.1f us" % ((t1-t0)/N*1e6))
for B in (6, 16, 64):
    groups=[reqs[i:i+B] for i in range(0,N,B)]
    sets=[ps(sorted(set(k for k,_ in g))) for g in groups]
    t0=time.perf_counter()
    for g,s in zip(groups,sets): cedar.authorize([rq for _,rq in g], s, ents, None)
    t1=time.perf_counter(); print("union of %d: %.1f us per decision" % (B, (t1-t0)/N*1e6))
whole = ps(range(1000))
t0=time.perf_counter()
for k, rq in reqs[:200]: cedar.authorize([rq], whole, ents, None)
t1=time.perf_counter(); print("whole set: %.1f us" % ((t1-t0)/200*1e6))
triv = cedar.parse_policies('permit(principal, action, resource);')
empty_ents = cedar.parse_entities("[]", None)
for name, pol, en in (("trivial policy, big entities", triv, ents), ("trivial policy, empty entities", triv, empty_ents)):
    t0=time.perf_counter()
    for k, rq in reqs: cedar.authorize([rq], pol, en, None)
    t1=time.perf_counter(); print(name, "%.1f us" % ((t1-t0)/N*1e6))
from cedarpy import _internal
t0=time.perf_counter()
for k, rq in reqs: _internal.is_authorized_batch([rq], triv, empty_ents, None, False)
t1=time.perf_counter(); print("raw call trivial %.1f us" % ((t1-t0)/N*1e6))
t0=time.perf_counter()
_internal.is_authorized_batch([rq for _,rq in reqs], triv, empty_ents, None, False)
t1=time.perf_counter(); print("raw call trivial one batch of 2000: %.1f us per req" % ((t1-t0)/N*1e6))
print(_internal.is_authorized_batch([reqs[0][1]], triv, empty_ents, None, False))
