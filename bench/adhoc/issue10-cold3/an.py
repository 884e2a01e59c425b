import sys, collections
tot=0; self_=collections.Counter(); incl=collections.Counter()
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    n=int(n); tot+=n
    frames=stack.split(";")
    self_[frames[-1]]+=n
    for f in set(frames): incl[f]+=n
print("total", tot)
print("== self"); 
for f,n in self_.most_common(40): print(f"{100*n/tot:5.1f}% {f}")
print("== inclusive")
for f,n in incl.most_common(90)[30:]: print(f"{100*n/tot:5.1f}% {f}")
