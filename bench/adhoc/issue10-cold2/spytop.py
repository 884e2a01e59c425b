"""Share of a py-spy raw profile's thread by the first frame under granian's serve call (what the event
loop was running: a request task, a batch task, a protocol callback, or nothing = native loop). argv: file thread"""
import collections, sys
rows = collections.Counter(); tot = 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" "); frames = stack.split(";"); n = int(n)
    if sys.argv[2] not in frames[0]: continue
    tot += n
    i = next((k for k, f in enumerate(frames) if "_spawn_asgi_lifespan_worker" in f), None)
    top = frames[i + 1] if i is not None and i + 1 < len(frames) else "(native loop)"
    rows[top.split(" (")[0] + " (" + top.split(" (")[1].split(":")[0] + ")" if " (" in top else top] += n
for k, n in rows.most_common(25): print(f"{100*n/tot:5.1f}% {k}")
