"""How each profile behaves: baselines, daily and weekly activity, state and incident rates.

Activity is a 0..1 curve over the hours of a weekday and of a weekend day; CPU, memory, I/O,
network and load follow it. The numbers are the design card's (for example ml_compute CPU
78% +/- 12, busiest evenings and nights) or, where it is silent, what such servers usually show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linborg.contract import PROFILE_NAMES


@dataclass(frozen=True)
class Behaviour:
    """The parameters of one profile."""

    cpu_mean: float  # percent busy (user + sys + iowait) on average
    cpu_std: float
    mem_mean: float
    mem_std: float
    iowait: float  # typical cpu_iowait_pct
    sys_share: float  # cpu_sys_pct as a share of busy CPU
    java_share: float  # java_cpu_pct as a share of cpu_user_pct
    net_in: float  # MB/s at full activity
    net_out: float
    close_wait: float  # typical CLOSE_WAIT count
    cores: int  # load average scale
    disk_growth: float  # percent of disk written per day by logs, rotated daily
    weekday: tuple[float, ...]  # activity at each hour 0..23 on a weekday
    weekend: tuple[float, ...]  # activity at each hour 0..23 on a weekend day
    morning_spike: float  # extra activity in the 07:30-09:30 weekday window
    incidents_per_day: float  # incident rate per server
    incident_types: dict[str, float]  # relative weights


def _curve(*pairs: tuple[int, float]) -> tuple[float, ...]:
    """Return 24 hourly values interpolated between (hour, value) anchors, wrapping at midnight."""
    hours = np.array([h for h, _ in pairs] + [pairs[0][0] + 24], float)
    values = np.array([v for _, v in pairs] + [pairs[0][1]], float)
    grid = np.arange(24, dtype=float)
    grid = np.where(grid < hours[0], grid + 24, grid)
    return tuple(float(x) for x in np.interp(grid, hours, values))


#: Incident types with a precursor: (min, max) precursor length in minutes and the driving metric.
PRECURSOR_TYPES: dict[str, tuple[int, int, str]] = {
    "memory_leak": (120, 480, "mem_used_pct"),
    "disk_fill": (60, 480, "disk_usage_pct"),
    "io_bottleneck": (30, 180, "cpu_iowait_pct"),
    "connection_leak": (60, 360, "back_close_wait"),
    "runaway_cpu": (30, 120, "cpu_idle_pct"),
    "gc_storm": (30, 180, "java_cpu_pct"),
}
#: Incident types that arrive with no warning at all.
SUDDEN_TYPES: dict[str, str] = {
    "hardware_fault": "uptime_days",
    "traffic_surge": "front_close_wait",
}
INCIDENT_TYPES: tuple[str, ...] = tuple(PRECURSOR_TYPES) + tuple(SUDDEN_TYPES)
#: How long the critical part of an incident lasts, in minutes.
INCIDENT_MINUTES = (30, 120)
#: Share of incidents that arrive with no precursor.
SUDDEN_SHARE = 0.15

BEHAVIOURS: dict[str, Behaviour] = {
    "ml_compute": Behaviour(
        cpu_mean=78, cpu_std=12, mem_mean=82, mem_std=10, iowait=0.8, sys_share=0.08,
        java_share=0.85, net_in=180, net_out=90, close_wait=3, cores=64, disk_growth=1.0,
        weekday=_curve((0, 1.0), (5, 0.95), (8, 0.55), (12, 0.5), (17, 0.7), (20, 1.0)),
        weekend=_curve((0, 0.9), (8, 0.7), (14, 0.6), (20, 0.9)),
        morning_spike=0.1, incidents_per_day=0.06,
        incident_types={"memory_leak": 3, "gc_storm": 3, "runaway_cpu": 2, "disk_fill": 1,
                        "io_bottleneck": 1},
    ),
    "database": Behaviour(
        cpu_mean=55, cpu_std=15, mem_mean=87, mem_std=8, iowait=15, sys_share=0.15,
        java_share=0.05, net_in=120, net_out=220, close_wait=5, cores=32, disk_growth=1.5,
        weekday=_curve((0, 0.3), (6, 0.35), (9, 0.55), (15, 0.65), (17, 1.0), (19, 0.9),
                       (21, 0.45)),
        weekend=_curve((0, 0.25), (12, 0.3), (20, 0.25)),
        morning_spike=0.15, incidents_per_day=0.06,
        incident_types={"io_bottleneck": 3, "disk_fill": 3, "memory_leak": 2,
                        "connection_leak": 1},
    ),
    "web_api": Behaviour(
        cpu_mean=28, cpu_std=8, mem_mean=55, mem_std=12, iowait=1.0, sys_share=0.2,
        java_share=0.45, net_in=60, net_out=140, close_wait=8, cores=16, disk_growth=0.8,
        weekday=_curve((0, 0.1), (7, 0.25), (9, 0.8), (12, 0.9), (15, 0.95), (16, 0.6),
                       (19, 0.3), (22, 0.15)),
        weekend=_curve((0, 0.1), (12, 0.2), (20, 0.15)),
        morning_spike=0.35, incidents_per_day=0.05,
        incident_types={"connection_leak": 4, "memory_leak": 2, "runaway_cpu": 1,
                        "gc_storm": 1},
    ),
    "conductor_mgmt": Behaviour(
        cpu_mean=35, cpu_std=8, mem_mean=60, mem_std=8, iowait=1.5, sys_share=0.15,
        java_share=0.6, net_in=20, net_out=20, close_wait=4, cores=8, disk_growth=0.6,
        weekday=_curve((0, 0.3), (7, 0.5), (10, 0.8), (16, 0.8), (19, 0.5)),
        weekend=_curve((0, 0.25), (12, 0.3)),
        morning_spike=0.2, incidents_per_day=0.04,
        incident_types={"connection_leak": 2, "gc_storm": 2, "memory_leak": 1},
    ),
    "data_ingest": Behaviour(
        cpu_mean=50, cpu_std=15, mem_mean=65, mem_std=10, iowait=8, sys_share=0.15,
        java_share=0.5, net_in=300, net_out=80, close_wait=4, cores=16, disk_growth=2.5,
        weekday=_curve((0, 0.9), (1, 1.0), (5, 0.9), (7, 0.4), (12, 0.5), (18, 0.6),
                       (22, 0.7)),
        weekend=_curve((0, 0.8), (5, 0.7), (8, 0.3), (20, 0.4)),
        morning_spike=0.1, incidents_per_day=0.06,
        incident_types={"disk_fill": 4, "io_bottleneck": 3, "memory_leak": 1},
    ),
    "risk_analytics": Behaviour(
        cpu_mean=82, cpu_std=10, mem_mean=88, mem_std=8, iowait=2.0, sys_share=0.07,
        java_share=0.7, net_in=80, net_out=40, close_wait=3, cores=32, disk_growth=1.0,
        weekday=_curve((0, 0.35), (6, 0.4), (10, 0.6), (14, 0.75), (16, 1.0), (19, 1.0),
                       (20, 0.5)),
        weekend=_curve((0, 0.3), (12, 0.35)),
        morning_spike=0.1, incidents_per_day=0.06,
        incident_types={"runaway_cpu": 2, "memory_leak": 3, "gc_storm": 2},
    ),
    "generic": Behaviour(
        cpu_mean=30, cpu_std=10, mem_mean=50, mem_std=12, iowait=2.0, sys_share=0.15,
        java_share=0.2, net_in=20, net_out=20, close_wait=3, cores=16, disk_growth=0.7,
        weekday=_curve((0, 0.3), (8, 0.6), (13, 0.7), (18, 0.5)),
        weekend=_curve((0, 0.3), (13, 0.4)),
        morning_spike=0.15, incidents_per_day=0.04,
        incident_types={"disk_fill": 2, "memory_leak": 2, "runaway_cpu": 1},
    ),
}  # fmt: skip

assert set(BEHAVIOURS) == set(PROFILE_NAMES), "every contract profile needs a behaviour"
