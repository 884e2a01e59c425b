"""A worker forked from a supervisor that created its metrics single-process switches them all to files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, os, sys
from prometheus_client import Counter, Gauge, Histogram
from meshauth.observability import metrics, multiprocess
from meshauth.observability.metrics import IntCounters, IntHistogram

# The supervisor: metrics made (and a labelled child bound) before the directory exists.
stock = Counter("t_stock_events", "x", ["kind"])
bound = stock.labels("a")
plain = Gauge("t_plain", "x", multiprocess_mode="max")  # not live*: the worker is gone when read
hist = Histogram("t_stock_seconds", "x")
ours = IntCounters("t_ours_events", "x", ["kind"])
ours.add("a")
oh = IntHistogram("t_ours_seconds", "x", [])
oh.observe(0.002)
assert not multiprocess.active()

os.environ[multiprocess.ENV] = sys.argv[1]
pid = os.fork()
if pid == 0:  # the worker
    metrics.enter_worker()
    bound.inc(2)
    plain.inc(3)
    hist.observe(0.5)
    ours.add("a")
    oh.observe(0.004)
    os._exit(0)
os.waitpid(pid, 0)
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
text = generate_latest(multiprocess.merged_registry()).decode()
print(json.dumps({s.name + json.dumps(s.labels, sort_keys=True): s.value
                  for f in text_string_to_metric_families(text) for s in f.samples}))
"""


def test_a_forked_worker_writes_every_metric_to_its_files(tmp_path: Path) -> None:
    """Values made before the fork (prometheus_client's and ours, bound children included) are written
    by the worker to its own files after ``enter_worker``, and the merged scrape shows them."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, check=True
    ).stdout
    samples = json.loads(out)
    assert samples['t_stock_events_total{"kind": "a"}'] == 2
    assert samples["t_plain{}"] == 3
    assert samples["t_stock_seconds_count{}"] == 1
    # Ours: what the supervisor counted before the fork is carried into the worker's file, then the worker's own.
    assert samples['t_ours_events_total{"kind": "a"}'] == 2
    assert samples["t_ours_seconds_count{}"] == 2
    assert {p.name.split("-")[0].split("_")[0] for p in tmp_path.iterdir()} >= {"counter", "gauge", "histogram"}
