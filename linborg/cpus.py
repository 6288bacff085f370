"""How many CPUs this process may actually use: affinity and the cgroup's CPU quota.

``os.cpu_count()`` counts the machine's cores; a container limited to 1.5 CPUs, or a process
pinned to two cores, may use fewer. Running more torch threads than that makes them wait on
each other (and on the neighbours) instead of working.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """Return the cgroup's CPU quota in CPUs (1.5 for "150000 100000"), or None if unlimited."""
    try:  # cgroup v2
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """Return the CPUs this process may use: its affinity, capped by the cgroup's quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def _host_busy_seconds(stat: Path = Path("/proc/stat")) -> tuple[float, int] | None:
    """Return (CPU seconds processes ran since boot, CPUs counted) from /proc/stat."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    for line in lines:
        if line.startswith("cpu "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (
                int(x) for x in line.split()[1:9]
            )
            # Niced processes give way to this one, so their time counts as idle, unless this
            # process is niced itself (its own time is then counted there).
            busy = user + system + irq + softirq + steal + (nice if os.nice(0) > 0 else 0)
            return busy / os.sysconf("SC_CLK_TCK"), max(1, cpus)
    return None


class CpuLoad:
    """How many CPUs other processes kept busy, averaged since the previous reading.

    The host's busy time (/proc/stat) less this process's own CPU time, over the wall time
    between two readings. Inside a container /proc/stat counts the whole node, so the load is
    scaled to this process's share of it (``usable / host CPUs``). ``stat`` is injectable for
    tests; where /proc/stat cannot be read the load reads as zero.
    """

    def __init__(self, stat: Path = Path("/proc/stat"), clock=time.monotonic, own=None):
        self.stat = stat
        self.clock = clock
        self.own = own or (lambda: sum(os.times()[:2]))
        self._last = self._read()

    def _read(self):
        host = _host_busy_seconds(self.stat)
        return None if host is None else (self.clock(), host[0], host[1], self.own())

    def others(self, usable: int) -> float:
        """Return the CPUs (of ``usable``) others kept busy since the last call, and reset."""
        last, now = self._last, self._read()
        self._last = now
        if last is None or now is None or now[0] - last[0] <= 0:
            return 0.0
        wall = now[0] - last[0]
        others = max(0.0, (now[1] - last[1]) - (now[3] - last[3])) / wall
        host_cpus = now[2]
        return min(float(usable), others * usable / max(host_cpus, usable))


def inference_threads(usable: int, others: float) -> int:
    """Return the inference threads for ``usable`` CPUs of which others keep ``others`` busy.

    A thread on a CPU another process holds waits for its time slice, and torch's parallel
    loops wait for their slowest thread: beside one busy process on two CPUs one thread
    finishes a batch sooner than two (docs/scaling.md).
    """
    return max(1, min(usable, int(usable - others + 0.5)))
