#!/bin/bash
# Same bench (authn vs authz warm, 4 rounds x 8 s), services from the tree given: $1 = label, $2 = src
echo "$1 start $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
PYTHONPATH=/tmp/warm-new/src /work/main/.venv/bin/python /tmp/warm/warm_rounds.py $2 4 8 /tmp/warm/rounds-$1-$(date -u +%H%M%S).json
echo "$1 end $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
