"""Threads follow the CPUs the process may use: affinity and the cgroup's quota."""

from __future__ import annotations

import dataclasses
import os

import pytest

from linborg.cpus import CpuLoad, cgroup_quota, inference_threads, usable_cpus


def test_cgroup_v2_quota_is_read_and_caps_the_threads(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(tmp_path) == 1.5
    assert usable_cpus(tmp_path) == min(len(os.sched_getaffinity(0)), 2)
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cpus(tmp_path) == 1  # half a CPU still gets one thread


def test_unlimited_or_missing_quota_leaves_the_affinity(tmp_path):
    assert cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 1.0
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path) is None


def _stat(path, busy_ticks: int, idle_ticks: int, cpus: int = 2, nice_ticks: int = 0) -> None:
    """Write a /proc/stat with ``busy_ticks`` of user time and ``idle_ticks`` idle in all."""
    per = "\n".join(f"cpu{i} 0 0 0 0 0 0 0 0 0 0" for i in range(cpus))
    path.write_text(f"cpu  {busy_ticks} {nice_ticks} 0 {idle_ticks} 0 0 0 0 0 0\n{per}\nintr 0\n")


def test_the_load_of_other_processes_is_the_host_busy_time_less_our_own(tmp_path):
    tick = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    clock, own = [0.0], [0.0]
    _stat(stat, 0, 0)
    load = CpuLoad(stat, clock=lambda: clock[0], own=lambda: own[0])
    # 10 s: the host ran 15 CPU-seconds, 5 of them ours, so others kept 1 CPU busy.
    clock[0], own[0] = 10.0, 5.0
    _stat(stat, 15 * tick, 5 * tick)
    assert load.others(2) == pytest.approx(1.0)
    # The next 10 s: only our 8 CPU-seconds. Nobody else: both CPUs are ours again.
    clock[0], own[0] = 20.0, 13.0
    _stat(stat, 23 * tick, 17 * tick)
    assert load.others(2) == pytest.approx(0.0)


def test_on_a_bigger_host_the_load_counts_for_our_share_of_it(tmp_path):
    tick = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    clock = [0.0]
    _stat(stat, 0, 0, cpus=16)
    load = CpuLoad(stat, clock=lambda: clock[0], own=lambda: 0.0)
    clock[0] = 10.0
    _stat(stat, 80 * tick, 80 * tick, cpus=16)  # 8 of 16 CPUs busy: half the node
    assert load.others(4) == pytest.approx(2.0)  # half of our 4


def test_niced_processes_give_way_and_do_not_count(tmp_path):
    tick = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    clock = [0.0]
    _stat(stat, 0, 0)
    load = CpuLoad(stat, clock=lambda: clock[0], own=lambda: 0.0)
    clock[0] = 10.0
    _stat(stat, 0, 10 * tick, nice_ticks=10 * tick)  # a nice 19 build kept one CPU busy
    if os.nice(0) == 0:
        assert load.others(2) == 0.0


def test_without_proc_stat_the_load_reads_as_zero(tmp_path):
    load = CpuLoad(tmp_path / "missing")
    assert load.others(2) == 0.0


@pytest.mark.parametrize(
    ("usable", "others", "threads"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 2.0, 1), (8, 3.0, 5), (1, 0.0, 1)],
)
def test_inference_threads_leave_the_busy_cpus_to_their_owners(usable, others, threads):
    assert inference_threads(usable, others) == threads


def test_an_exporter_with_threads_auto_runs_inference_on_the_idle_cpus(tmp_path):
    from linborg.exporter.config import config_from_dict
    from linborg.exporter.cycle import Exporter
    from linborg.thresholds import load_thresholds

    tick = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    clock = [0.0]
    _stat(stat, 0, 0)
    auto_on_two = dataclasses.replace(config_from_dict({"threads": 2}), threads_auto=True)
    exp = Exporter(auto_on_two, None, None, load_thresholds())
    exp.cpu_load = CpuLoad(stat, clock=lambda: clock[0], own=lambda: 0.0)
    clock[0] = 10.0
    _stat(stat, 10 * tick, 10 * tick)  # another process kept one of the two CPUs busy
    exp._choose_threads()
    assert exp.stats.inference_threads == 1
    clock[0] = 20.0
    _stat(stat, 10 * tick, 30 * tick)  # and then stopped
    exp._choose_threads()
    assert exp.stats.inference_threads == 2
    fixed = Exporter(config_from_dict({"threads": 2}), None, None, load_thresholds())
    assert fixed.cpu_load is None
    fixed._choose_threads()
    assert fixed.stats.inference_threads == 2
