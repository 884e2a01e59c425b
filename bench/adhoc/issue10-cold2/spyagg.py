"""Aggregate a py-spy raw (collapsed) profile: self and inclusive share per function, for one thread
(the one with most samples unless argv[2] names it). argv: file [thread-substring] [top]"""
import collections, sys
path = sys.argv[1]; want = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
threads = collections.Counter(); rows = []
for line in open(path):
    stack, _, n = line.rstrip().rpartition(" ")
    frames = stack.split(";"); n = int(n)
    threads[frames[0]] += n; rows.append((frames, n))
thread = want and next(t for t in threads if want in t) or threads.most_common(1)[0][0]
tot = threads[thread]; self_ = collections.Counter(); incl = collections.Counter()
for frames, n in rows:
    if frames[0] != thread: continue
    self_[frames[-1]] += n
    for f in set(frames[1:]): incl[f] += n
print(f"thread {thread}: {tot} samples; threads: {dict(threads.most_common(6))}")
print("--- self"); [print(f"{100*n/tot:5.1f}% {f}") for f, n in self_.most_common(top)]
print("--- inclusive"); [print(f"{100*n/tot:5.1f}% {f}") for f, n in incl.most_common(top)]
