import time, cedarpy
from cedarpy import _internal as I
pol = I.PolicySet.from_str('''@id("view-all") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);''')
ents = cedarpy.Entities.from_json_str("[]")._inner
def reqs(n, r): return [{"principal":{"type":"User","id":f"u{r}-{k}"},"action":{"type":"Action","id":"view"},"resource":{"type":"Doc","id":f"d{k}"}} for k in range(n)]
for n in (1, 16, 64, 256):
    rs=[reqs(n, r) for r in range(20)]
    R=max(1, 20000//n)
    t=time.process_time()
    for i in range(R): I.is_authorized_batch(rs[i%20], pol, ents, None, False)
    dt=time.process_time()-t
    print(n, f"{dt/R/n*1e6:.2f} us/request")
out=I.is_authorized_batch(reqs(2,0), pol, ents, None, False); print(out)
