"""Facts about the host this process runs on: the CPUs it may really use (a container's quota included).

The batch pool sizes itself from :func:`available_cpus`, and so does a pipeline that runs its own
threads (OCR's pages).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota (a container's
    ``--cpus``; cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), rounded up, at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def cgroup_cpu_quota(
    root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when unlimited or unknown.

    cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); the tightest quota of
    the process's cgroup and its ancestors.  In a container the mounted hierarchy often starts at the
    container's own cgroup while ``/proc/self/cgroup`` names the host's path: the mount root counts too.
    """
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    v2 = (root / "cgroup.controllers").exists()
    quotas: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if v2 and controllers == "":
            for folder in _lineage(root, path):
                with contextlib.suppress(OSError, ValueError):
                    quota, period = (folder / "cpu.max").read_text().split()
                    if quota != "max" and int(period) > 0:
                        quotas.append(int(quota) / int(period))
        elif not v2 and "cpu" in controllers.split(","):
            for base in (root / "cpu,cpuacct", root / "cpu"):
                for folder in _lineage(base, path):
                    with contextlib.suppress(OSError, ValueError):
                        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
                        period_us = int((folder / "cpu.cfs_period_us").read_text())
                        if quota_us > 0 and period_us > 0:
                            quotas.append(quota_us / period_us)
    return min(quotas) if quotas else None


def _lineage(base: Path, path: str) -> list[Path]:
    """``base/path`` and each of its ancestors down to ``base`` itself."""
    folder = base / path.strip("/")
    out = [folder]
    while folder != base and base in folder.parents:
        folder = folder.parent
        out.append(folder)
    return out
