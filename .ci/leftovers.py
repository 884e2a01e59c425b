"""After the test run: the processes it left behind (servers, workers, Valkeys), which a test must stop.

A process is the run's when its environment carries the run's marker (``CI_TEST_RUN``, set for ``make
test`` only; named outside ``MESHAUTH_`` because the tests' helpers drop those variables for the
servers they start). Ones still there after a grace (a server told to stop may still be exiting) are
listed and killed; the exit status says so (``.ci/run`` warns, it does not fail the run on it).
Processes started with an environment built from scratch carry no marker and are not seen.
"""

from __future__ import annotations

import sys
import time

import psutil

GRACE = 30.0  # seconds


def left(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("CI_TEST_RUN") == marker:
                found.append(proc)
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return found


def main() -> int:
    marker = sys.argv[1]
    deadline = time.monotonic() + GRACE
    while (procs := left(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not procs:
        return 0
    print(f"the test run left {len(procs)} process(es) running:", file=sys.stderr)
    for proc in procs:
        try:
            print(f"  {proc.pid} {' '.join(proc.cmdline())[:200]}", file=sys.stderr)
            proc.kill()
        except psutil.Error:
            continue
    return 1


if __name__ == "__main__":
    sys.exit(main())
