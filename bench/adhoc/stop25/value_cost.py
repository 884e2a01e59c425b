"""The engine's cost of a request context at the default weight limit (policy_max_request_values), per shape:
run from the repository root: python bench/adhoc/stop25/value_cost.py"""
import time, json, cedarpy, sys
sys.path.insert(0, "src")
from meshauth.nesting import shape
pol = 'permit(principal, action, resource) when { context has x };'
req = lambda ctx: {"principal": 'User::"a"', "action": 'Action::"read"', "resource": 'Doc::"d"', "context": ctx}
def t(name, make):
    n = 1
    while shape(make(n * 2))[1] <= 65_536: n *= 2
    lo, hi = n, n * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if shape(make(mid))[1] <= 65_536: lo = mid
        else: hi = mid
    ctx = make(lo); d, w = shape(ctx)
    best = 99
    for _ in range(3):
        s = time.perf_counter(); cedarpy.is_authorized(req(ctx), pol, []); best = min(best, time.perf_counter() - s)
    print(f"{name:26} depth {d:2} weight {w:6} {len(json.dumps(ctx)):7} B {best*1000:7.1f} ms")
def chain(levels, rec):
    v = 1
    for _ in range(levels): v = {"a": v} if rec else [v]
    return v
for levels in (0, 1, 2, 4, 8, 14):
    t(f"lists {levels}", lambda n, l=levels: {"x": [chain(l, False) for _ in range(n)]})
    t(f"records {levels}", lambda n, l=levels: {"x": [chain(l, True) for _ in range(n)]})
t("top keys", lambda n: {f"k{i}": i for i in range(n)})
t("wide records", lambda n: {"x": [{f"k{j}": j for j in range(16)} for _ in range(n)]})
t("strings", lambda n: {"x": ["s" * 64] * n})
