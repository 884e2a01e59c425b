"""The benchmark's 2-policy set, 64 distinct requests per call: the engine (cedar.authorize, requests
built and answers decoded) vs the scope table (scope_table.ScopeTable.decide), per request, alternated,
best of 5."""
import timeit

from meshauth.policy import cedar
from meshauth.policy.scope_table import table_for

TEXT = '''@id("view-all") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);'''
policies = cedar.parse_policies(TEXT)
table = table_for(TEXT, len(policies))
assert table is not None
ents = cedar.parse_entities("[]", None)
uids = [(("User", f"u{k}"), ("Action", "view"), ("Doc", f"d{k}")) for k in range(64)]


def engine():
    return cedar.authorize([cedar.request(p, a, r, None) for p, a, r in uids], policies, ents, None)


def by_table():
    return [table.decide(p, a, r) for p, a, r in uids]


assert [(x.decision == "Allow", sorted(x.diagnostics.reason)) for x in engine()] == [
    (d, sorted(h)) for d, h in by_table()
]
n = 300
for f in (engine, by_table, engine, by_table):
    print(f.__name__, f"{min(timeit.repeat(f, number=n, repeat=5)) / n / 64 * 1e6:.2f} us per request")
