"""Per-profile thresholds: the packaged file, the breach rule and user override files."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from linborg.contract import METRIC_NAMES, METRICS_BY_NAME, PROFILE_NAMES, ContractError
from linborg.generator.fleet import DEFAULT_COMPOSITION, build_fleet
from linborg.generator.output import simulate
from linborg.generator.report import healthy_crossings
from linborg.thresholds import Threshold, load_thresholds

PACKAGED = load_thresholds()


def write(tmp_path, text: str, name: str = "override.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_packaged_thresholds_cover_every_profile_and_metric():
    table = PACKAGED.as_dict()
    assert set(table) == set(PROFILE_NAMES)
    for prof in PROFILE_NAMES:
        assert set(table[prof]) == set(METRIC_NAMES), prof
        for name in METRIC_NAMES:
            t = PACKAGED.get(prof, name)
            m = METRICS_BY_NAME[name]
            assert t.direction == m.direction
            assert m.min <= t.warning <= m.max and m.min <= t.critical <= m.max
            if m.direction == "above":
                assert t.warning < t.critical, (prof, name)
            else:
                assert t.warning > t.critical, (prof, name)


def test_database_iowait_warning_is_above_its_normal_15_percent():
    assert PACKAGED.get("database", "cpu_iowait_pct").warning > 15


def test_ml_compute_must_not_wait_on_io():
    assert PACKAGED.get("ml_compute", "cpu_iowait_pct").warning <= 2


def test_cpu_idle_is_lower_is_worse_for_every_profile():
    for prof in PROFILE_NAMES:
        t = PACKAGED.get(prof, "cpu_idle_pct")
        assert t.direction == "below"
        assert t.warning > t.critical, prof


def test_profile_entries_override_the_defaults():
    assert PACKAGED.get("generic", "cpu_user_pct").warning == 85
    assert PACKAGED.get("ml_compute", "cpu_user_pct").warning == 92
    assert PACKAGED.get("web_api", "cpu_iowait_pct") == Threshold(10, 25, "above")


def test_get_unknown_pair_is_a_contract_error():
    with pytest.raises(ContractError, match="no threshold for profile 'gpu', metric 'cpu_pct'"):
        PACKAGED.get("gpu", "cpu_pct")


def test_breached_above_at_and_past_the_level():
    t = Threshold(warning=80, critical=90, direction="above")
    assert not t.breached(79.9, "warning")
    assert t.breached(80, "warning")
    assert t.breached(85, "warning") and not t.breached(85, "critical")
    assert t.breached(90, "critical")
    assert t.breached(100, "critical")


def test_breached_below_at_and_under_the_level():
    t = Threshold(warning=10, critical=3, direction="below")
    assert not t.breached(10.1, "warning")
    assert t.breached(10, "warning")
    assert t.breached(5, "warning") and not t.breached(5, "critical")
    assert t.breached(3, "critical")
    assert t.breached(0, "critical")
    assert not t.breached(50, "critical")


def test_override_file_changes_one_value_and_keeps_the_rest(tmp_path):
    path = write(
        tmp_path,
        """
        profiles:
          database:
            cpu_iowait_pct: {warning: 35}
        """,
    )
    th = load_thresholds(path)
    assert th.get("database", "cpu_iowait_pct") == Threshold(35, 45, "above")
    before, after = PACKAGED.as_dict(), th.as_dict()
    after["database"]["cpu_iowait_pct"]["warning"] = before["database"]["cpu_iowait_pct"]["warning"]
    assert after == before


def test_override_defaults_and_several_files_apply_in_order(tmp_path):
    first = write(tmp_path, "defaults:\n  swap_used_pct: {warning: 20, critical: 50}\n", "a.yaml")
    second = write(tmp_path, "profiles:\n  web_api:\n    swap_used_pct: {critical: 60}\n", "b.yaml")
    th = load_thresholds(first, second)
    assert th.get("generic", "swap_used_pct") == Threshold(20, 50, "above")
    assert th.get("web_api", "swap_used_pct") == Threshold(20, 60, "above")
    assert th.get("web_api", "cpu_user_pct") == PACKAGED.get("web_api", "cpu_user_pct")


def test_empty_override_file_changes_nothing(tmp_path):
    assert load_thresholds(write(tmp_path, "")).as_dict() == PACKAGED.as_dict()


def test_bad_override_reports_every_problem_in_one_error(tmp_path):
    path = write(
        tmp_path,
        """
        defaults:
          cpu_power_pct: {warning: 1, critical: 2}
          cpu_pct: {warning: 80, critical: 90}
          mem_used_pct: {warning: high, critical: 97}
        profiles:
          gpu_box:
            cpu_user_pct: {warning: 1, critical: 2}
          database:
            swap_used_pct: {warning: 50, critical: 40}
            disk_usage_pct: {warning: 85, critical: 150}
            cpu_idle_pct: {warning: 2, critical: 8}
        """,
    )
    with pytest.raises(ContractError) as err:
        load_thresholds(path)
    text = str(err.value)
    assert "7 problem(s) in thresholds" in text
    expected = [
        "defaults.cpu_power_pct: unknown metric",
        "defaults.cpu_pct: 'cpu_pct' is a deprecated name; use 100 - cpu_idle_pct",
        "defaults.mem_used_pct.warning: expected a number, got 'high'",
        "profiles.gpu_box: unknown profile; known: ml_compute",
        "database.swap_used_pct: warning (50) must be below critical (40)",
        "database.disk_usage_pct.critical: 150 is outside the valid range [0, 100]",
        "database.cpu_idle_pct: warning (2) must be above critical (8) because lower is worse",
    ]
    for fragment in expected:
        assert fragment in text, fragment
    assert str(path) in text


def test_unknown_keys_and_wrong_shapes_are_reported(tmp_path):
    path = write(
        tmp_path,
        """
        default:
          cpu_user_pct: {warning: 1, critical: 2}
        profiles:
          web_api:
            cpu_user_pct: 90
            cpu_sys_pct: {warn: 10, critical: 30}
            net_in_mb_s: {warning: true, critical: 1000}
        """,
    )
    text = str(pytest.raises(ContractError, load_thresholds, path).value)
    assert "unknown top-level key 'default'" in text
    assert "profiles.web_api.cpu_user_pct: expected a mapping with warning and critical" in text
    assert "profiles.web_api.cpu_sys_pct.warn: unknown key" in text
    assert "profiles.web_api.net_in_mb_s.warning: expected a number, got True" in text


def test_override_that_is_not_a_mapping_is_refused(tmp_path):
    path = write(tmp_path, "- cpu_user_pct\n- 90\n")
    with pytest.raises(ContractError, match="expected a mapping with 'defaults' and/or 'profiles'"):
        load_thresholds(path)


def test_unreadable_override_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ContractError) as err:
        load_thresholds(missing)
    assert f"{missing}: cannot read thresholds file: No such file or directory" in str(err.value)
    with pytest.raises(ContractError, match="cannot read thresholds file"):
        load_thresholds(tmp_path)  # a directory


def test_invalid_yaml_is_a_clear_error(tmp_path):
    path = write(tmp_path, "defaults: [unclosed\n")
    with pytest.raises(ContractError) as err:
        load_thresholds(path)
    assert f"{path}: not valid YAML" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_unreadable_and_bad_files_are_reported_together(tmp_path):
    bad = write(tmp_path, "defaults:\n  latency_ms: {warning: 1, critical: 2}\n")
    with pytest.raises(ContractError) as err:
        load_thresholds(tmp_path / "missing.yaml", bad)
    text = str(err.value)
    assert "2 problem(s)" in text
    assert "cannot read thresholds file" in text
    assert "'latency_ms' is a deprecated name with no LINBORG replacement" in text


def test_a_profile_value_beats_an_override_default(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("defaults:\n  cpu_iowait_pct: {warning: 12, critical: 26}\n")
    th = load_thresholds(path)
    assert th.get("web_api", "cpu_iowait_pct").warning == 12  # no profile value: default applies
    assert th.get("database", "cpu_iowait_pct").warning == 30  # packaged profile value stays
    path.write_text("profiles:\n  database:\n    cpu_iowait_pct: {warning: 33}\n")
    assert load_thresholds(path).get("database", "cpu_iowait_pct").warning == 33


def test_the_healthy_fleet_levels_move_only_warnings_and_cut_healthy_crossings():
    path = Path(__file__).resolve().parents[1] / "docs" / "thresholds-healthy-fleet.yaml"
    healthy = load_thresholds(path)
    moved = []
    for (profile, metric), t in PACKAGED.items():
        h = healthy.get(profile, metric)
        assert h.critical == t.critical and h.direction == t.direction, (profile, metric)
        if h.warning != t.warning:
            moved.append((profile, metric))
            assert t.breached(h.warning, "warning")  # moved towards critical, never away
    assert ("database", "cpu_iowait_pct") in moved and ("ml_compute", "cpu_idle_pct") in moved
    fleet = build_fleet(DEFAULT_COMPOSITION)
    frame, incidents, _ = simulate(fleet, 11, dt.datetime(2026, 3, 2, tzinfo=dt.UTC), 2 * 288)
    labels = [i.as_dict() for i in incidents]
    before = healthy_crossings(frame, labels, PACKAGED)
    after = healthy_crossings(frame, labels, healthy)
    assert after["episodes"].sum() < before["episodes"].sum() / 5, (before, after)
