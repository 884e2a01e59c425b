import sys, collections
self_=collections.Counter(); incl=collections.Counter(); total=0
for line in open(sys.argv[1]):
    line=line.rstrip()
    if not line: continue
    stack,_,n=line.rpartition(' ')
    n=int(n); total+=n
    frames=stack.split(';')
    self_[frames[-1]]+=n
    for f in set(frames): incl[f]+=n
print('total',total)
print('--- self'); 
for f,n in self_.most_common(int(sys.argv[2]) if len(sys.argv)>2 else 30): print(f'{100*n/total:5.1f}% {f}')
print('--- inclusive')
for f,n in incl.most_common(int(sys.argv[3]) if len(sys.argv)>3 else 40): print(f'{100*n/total:5.1f}% {f}')
