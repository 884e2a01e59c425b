# stop 23: tracked objects a never-seen path leaves in the gate's two memos (run with PYTHONPATH=src:.)
import gc
from meshauth.auth.authz_questions import Questions
from meshauth.auth.gate import allow
from meshauth.client import PolicyClient
from meshauth.routes import parse_routes
from tests.client.mock import MockTransport
c = PolicyClient(["http://pdp"], transport=MockTransport())
t = parse_routes('routes:\n  - {method: GET, path: "/documents/{id}", action: read, resource: {type: Document, id: "{id}"}}\n')
m = Questions(c); v = allow("alice", "app", "read", "bearer")
gc.collect(); n0 = len(gc.get_objects())
for i in range(5000):
    m.get(v, t.match("GET", f"/documents/d{i}"))
gc.collect(); n1 = len(gc.get_objects())
print("tracked objects per new path (route memo + question memo):", (n1 - n0) / 5000)
