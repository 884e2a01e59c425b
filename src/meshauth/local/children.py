"""How the local stack starts and ends its child processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if `meshauth up` is killed outright (SIGKILL, OOM), its
    # children get SIGTERM instead of living on as orphans holding the stack's ports.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def detach_from_terminal() -> dict[str, Any]:
    """Popen arguments for a supervised child: its own process group, ended by the supervisor.

    Its own group, so that Ctrl-C reaches only the supervisor, which stops the services before the
    Valkey they use (no burst of connection errors on the way down), and so that a crashed service's
    orphaned workers can be ended as one group before it is started again on the same port.
    """
    kwargs: dict[str, Any] = {"start_new_session": True}
    if sys.platform == "linux":
        kwargs["preexec_fn"] = _die_with_parent
    return kwargs


def kill_group(pid: int) -> None:
    """SIGKILL whatever is left of a child's process group (a crashed granian's workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
