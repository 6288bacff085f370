"""Shared fixtures. The table builder itself is the plain function ``helpers.make_frame``."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import make_frame


@pytest.fixture
def frame() -> pd.DataFrame:
    """A small valid long-format metrics table (3 servers x 12 five-minute steps)."""
    return make_frame()


@pytest.fixture
def frame_factory():
    """The ``make_frame(servers=..., steps=..., start=..., seed=...)`` builder, for variants."""
    return make_frame


def pytest_configure(config):
    """Keep torch's idle threads from spinning and, under pytest-xdist, give each worker its
    own CPUs and its own stripe of loopback ports.

    ``free_ports`` never hands a port out twice in one process, but two workers could each
    find the same port free before either binds it. Marking the other workers' stripes as
    handed out keeps their picks apart (services a test starts as subprocesses, like the demo,
    still pick from the whole range).
    """
    import os

    # As the `linborg` command does (linborg/app/cli.py): OpenMP threads that wait sleep instead
    # of spinning, so a worker's torch does not take CPU time the other worker needs. Set before
    # anything imports torch; kept when the caller chose a policy.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return
    index = int(worker[2:])
    pin_to_own_cpus(index, count)
    from linborg.app import stack

    stack._handed_out.update(p for p in range(1024, 65536) if p % count != index)


def pin_to_own_cpus(index: int, count: int) -> None:
    """Give worker INDEX of COUNT its own share of the CPUs (and so its torch threads).

    Training and forecasting size torch's thread pool by the CPUs a process may use. Two
    workers that each spin two threads on 2 cores slow a tiny training run from ~7 s to ~47 s
    (measured 2026-12-03); pinned, each runs at full speed on its own core. The services a
    test starts inherit the worker's CPUs.
    """
    import os

    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if len(cpus) < count:
        return
    os.sched_setaffinity(0, cpus[index::count])
