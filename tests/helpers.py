"""Plain helpers shared by the foundation tests: build valid LINBORG metrics tables."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

from linborg.contract import METRIC_NAMES, STEP_SECONDS, infer_profile

DEFAULT_SERVERS = ("ppml0001", "ppdb001", "ppweb001")
DEFAULT_START = "2026-01-05T00:00:00Z"  # a Monday


def make_frame(
    servers: Sequence[str] = DEFAULT_SERVERS,
    steps: int = 12,
    start: str | pd.Timestamp = DEFAULT_START,
    seed: int = 0,
) -> pd.DataFrame:
    """Return a valid long-format metrics table: every server at every 5-minute step.

    Profiles are inferred from the hostnames; values are in range and CPU user + sys +
    iowait + idle is exactly 100.
    """
    rng = np.random.default_rng(seed)
    times = pd.date_range(pd.Timestamp(start), periods=steps, freq=f"{STEP_SECONDS}s", tz="UTC")
    n = len(servers) * steps
    user = rng.uniform(10, 60, n)
    sys_ = rng.uniform(1, 10, n)
    iowait = rng.uniform(0, 5, n)
    values = {
        "cpu_user_pct": user,
        "cpu_sys_pct": sys_,
        "cpu_iowait_pct": iowait,
        "cpu_idle_pct": 100.0 - user - sys_ - iowait,
        "java_cpu_pct": user * rng.uniform(0.2, 0.9, n),
        "mem_used_pct": rng.uniform(30, 80, n),
        "swap_used_pct": rng.uniform(0, 5, n),
        "disk_usage_pct": rng.uniform(20, 70, n),
        "net_in_mb_s": rng.uniform(1, 200, n),
        "net_out_mb_s": rng.uniform(1, 200, n),
        "back_close_wait": rng.integers(0, 20, n).astype(np.float64),
        "front_close_wait": rng.integers(0, 20, n).astype(np.float64),
        "load_average": rng.uniform(0.5, 8, n),
        "uptime_days": np.repeat(rng.uniform(1, 100, len(servers)), steps),
    }
    assert tuple(values) == METRIC_NAMES
    frame = pd.DataFrame(
        {
            "timestamp": np.tile(times, len(servers)),
            "server": np.repeat(np.asarray(servers, dtype=object), steps),
            "profile": np.repeat(
                np.asarray([infer_profile(s).profile for s in servers], dtype=object), steps
            ),
            "state": "healthy",
            **{name: v.astype(np.float64) for name, v in values.items()},
        }
    )
    return frame


def output_of_fresh_python(code: str, hash_seed: int) -> str:
    """Return what ``code`` prints in a new interpreter with PYTHONHASHSEED=``hash_seed``.

    Two seeds give two orders of every set and str-keyed hash: comparing their outputs catches
    a render that depends on them, which comparing two calls in one process cannot.
    """
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
