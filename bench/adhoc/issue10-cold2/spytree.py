"""Inclusive tree of a py-spy raw profile under the first frame matching argv[3] (thread argv[2]), to depth argv[4], >= argv[5] %."""
import collections, sys
path, thread, root = sys.argv[1:4]; depth = int(sys.argv[4]); floor = float(sys.argv[5])
tree = collections.Counter(); tot = 0
for line in open(path):
    stack, _, n = line.rstrip().rpartition(" "); frames = stack.split(";"); n = int(n)
    if thread not in frames[0]: continue
    tot += n
    i = next((k for k, f in enumerate(frames) if root in f), None)
    if i is None: continue
    sub = tuple(f.split(" (")[0] + ":" + f.rsplit(":", 1)[-1].rstrip(")") for f in frames[i:i + depth + 1])
    for d in range(1, len(sub) + 1): tree[sub[:d]] += n
for k in sorted(tree):
    if 100 * tree[k] / tot >= floor: print(f"{100*tree[k]/tot:5.1f}% " + "  " * (len(k) - 1) + k[-1])
