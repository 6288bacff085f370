"""check()/validate() of a long-format metrics table: every problem, as data and as text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from linborg.contract import METRIC_NAMES, ContractError
from linborg.validate import Problem, ValidationError, check, validate


def only(frame, kind: str, **kw) -> Problem:
    """Return the one problem of ``frame``, after checking it is of ``kind``."""
    problems = check(frame, **kw)
    assert [p.kind for p in problems] == [kind], problems
    return problems[0]


def kinds(frame, **kw) -> set[str]:
    return {p.kind for p in check(frame, **kw)}


# --- valid tables ---------------------------------------------------------------------------


def test_valid_frame_passes(frame):
    assert check(frame) == []
    assert validate(frame) is None


def test_helper_frame_is_a_plausible_fleet(frame):
    cpu = frame[["cpu_user_pct", "cpu_sys_pct", "cpu_iowait_pct", "cpu_idle_pct"]].sum(axis=1)
    np.testing.assert_allclose(cpu, 100.0)
    assert (frame["java_cpu_pct"] <= frame["cpu_user_pct"]).all()
    assert set(frame["profile"]) == {"ml_compute", "database", "web_api"}
    assert frame.groupby("server").size().tolist() == [12, 12, 12]


def test_valid_variants_pass(frame_factory):
    assert check(frame_factory(servers=["ppcon01"], steps=1)) == []
    assert check(frame_factory(steps=300, start="2026-03-07T23:55:00Z")) == []
    naive = frame_factory()
    naive["timestamp"] = naive["timestamp"].dt.tz_localize(None)
    assert check(naive) == []
    no_state = frame_factory().drop(columns="state")
    assert check(no_state) == []
    categorical = frame_factory()
    categorical["server"] = categorical["server"].astype("category")
    categorical["profile"] = categorical["profile"].astype("category")
    assert check(categorical) == []
    shuffled = frame_factory().sample(frac=1.0, random_state=1)
    assert check(shuffled) == []
    integers = frame_factory()
    integers["back_close_wait"] = integers["back_close_wait"].astype("int64")
    assert check(integers) == []


# --- one problem at a time ------------------------------------------------------------------


def test_missing_metric_and_key_columns(frame):
    problems = check(frame.drop(columns=["mem_used_pct", "swap_used_pct", "server"]))
    assert [p.kind for p in problems] == ["missing_column", "missing_column"]
    assert problems[0].message == "required column 'server' is missing"
    assert problems[1].count == 2
    assert "metric columns missing: mem_used_pct, swap_used_pct" in problems[1].message


def test_extra_column(frame):
    frame["cpu_temp_c"] = 50.0
    p = only(frame, "extra_column")
    assert p.count == 1
    assert "unexpected columns: cpu_temp_c" in p.message
    assert "timestamp, server, profile, state" in p.message


def test_timestamp_as_text_is_wrong_dtype(frame):
    frame["timestamp"] = frame["timestamp"].astype(str)
    p = only(frame, "wrong_dtype")
    assert p.count == len(frame)
    assert "column 'timestamp' has dtype" in p.message
    assert "expected datetime64 (UTC)" in p.message


def test_timestamp_in_another_zone_is_wrong_dtype(frame):
    frame["timestamp"] = frame["timestamp"].dt.tz_convert("Europe/Paris")
    p = only(frame, "wrong_dtype")
    assert "time zone Europe/Paris; expected UTC" in p.message


@pytest.mark.parametrize("as_type", [str, object])
def test_metric_as_text_or_object_is_wrong_dtype(frame, as_type):
    frame["mem_used_pct"] = frame["mem_used_pct"].astype(str).astype(as_type)
    p = only(frame, "wrong_dtype")
    assert p.count == len(frame)
    assert "metric 'mem_used_pct' has dtype" in p.message
    assert "expected a number (percent)" in p.message


def test_metric_as_bool_is_wrong_dtype(frame):
    frame["swap_used_pct"] = frame["swap_used_pct"] > 2
    assert "metric 'swap_used_pct' has dtype bool" in only(frame, "wrong_dtype").message


def test_server_as_int_is_wrong_dtype(frame):
    frame["server"] = np.arange(len(frame)) // 12
    p = only(frame, "wrong_dtype")
    assert p.message == "column 'server' has dtype int64; expected strings"


def test_nan_metric(frame):
    frame.loc[[3, 20], "mem_used_pct"] = np.nan
    p = only(frame, "nan")
    assert p.count == 2
    assert "'mem_used_pct' has 2 NaN values" in p.message
    assert "e.g. server 'ppml0001' at 2026-01-05T00:15:00Z" in p.message
    assert "server 'ppdb001' at 2026-01-05T00:40:00Z" in p.message


def test_missing_timestamp_and_empty_server_are_reported(frame):
    frame.loc[5, "timestamp"] = pd.NaT
    frame.loc[7, "server"] = ""
    problems = check(frame)
    assert {(p.kind, p.count) for p in problems} == {("nan", 1)}
    assert len(problems) == 2
    text = " | ".join(p.message for p in problems)
    assert "'timestamp' has 1 missing values" in text
    assert "'server' has 1 empty values" in text


def test_inf(frame):
    frame.loc[4, "net_in_mb_s"] = np.inf
    frame.loc[30, "net_in_mb_s"] = -np.inf
    p = only(frame, "inf")
    assert p.count == 2
    assert "'net_in_mb_s' has 2 infinite values" in p.message
    assert "server 'ppml0001' at 2026-01-05T00:20:00Z value inf" in p.message
    assert "value -inf" in p.message


def test_out_of_range_names_value_and_range(frame):
    frame.loc[3, "mem_used_pct"] = 120.5
    p = only(frame, "out_of_range")
    assert p.count == 1
    assert "'mem_used_pct' has 1 values outside [0, 100] percent" in p.message
    assert "server 'ppml0001' at 2026-01-05T00:15:00Z value 120.5" in p.message


def test_negative_and_huge_values_are_out_of_range(frame):
    frame.loc[0, "cpu_idle_pct"] = -0.5
    frame.loc[1, "net_out_mb_s"] = 20000.0
    frame.loc[2, "uptime_days"] = 5000.0
    problems = check(frame)
    assert [p.kind for p in problems] == ["out_of_range"] * 3
    text = " | ".join(p.message for p in problems)
    assert "outside [0, 100] percent" in text and "value -0.5" in text
    assert "outside [0, 12500] megabytes per second" in text and "value 20000.0" in text
    assert "outside [0, 3650] days" in text


def test_duplicate_server_timestamp(frame):
    frame = pd.concat([frame, frame.iloc[[2, 14]]], ignore_index=True)
    p = only(frame, "duplicate_row")
    assert p.count == 2
    assert "2 rows repeat an earlier (server, timestamp)" in p.message
    assert "e.g. server 'ppml0001' at 2026-01-05T00:10:00Z" in p.message


def test_irregular_step(frame):
    frame = frame.drop(index=[4]).reset_index(drop=True)
    p = only(frame, "irregular_step")
    assert p.count == 1
    assert "1 samples are not exactly 5 minutes after the previous one" in p.message
    assert "e.g. server 'ppml0001' at 2026-01-05T00:25:00Z" in p.message


def test_off_grid_timestamp(frame):
    frame.loc[4, "timestamp"] += pd.Timedelta(seconds=30)
    p = only(frame, "irregular_step")
    assert p.count == 2  # the shifted sample and the one after it
    assert "not on the 5-minute grid" in p.message
    assert "server 'ppml0001' at 2026-01-05T00:20:30Z" in p.message


def test_whole_frame_off_grid(frame_factory):
    p = only(frame_factory(start="2026-01-05T00:01:00Z"), "irregular_step")
    assert p.count == 36
    assert "36 samples" in p.message and "at 2026-01-05T00:01:00Z" in p.message


def test_unknown_profile(frame):
    frame["profile"] = frame["profile"].replace("database", "gpu_box")
    p = only(frame, "unknown_profile")
    assert p.count == 12
    assert "12 rows have unknown profiles ['gpu_box']" in p.message
    assert "known profiles are: ml_compute, database" in p.message
    assert "server 'ppdb001' at 2026-01-05T00:00:00Z value 'gpu_box'" in p.message


def test_server_with_two_profiles(frame):
    frame.loc[4, "profile"] = "database"
    p = only(frame, "inconsistent_profile")
    assert p.count == 1
    assert "1 servers have more than one profile, e.g. 'ppml0001'" in p.message


def test_unknown_state(frame):
    frame.loc[[5, 6], "state"] = "exploded"
    frame.loc[7, "state"] = None
    p = only(frame, "unknown_state")
    assert p.count == 3
    assert "3 rows have unknown states ['<missing>', 'exploded']" in p.message
    assert "known states are: critical_issue, healthy" in p.message
    assert "server 'ppml0001' at 2026-01-05T00:25:00Z value 'exploded'" in p.message


def test_history_to_train_may_leave_the_state_empty_but_not_unknown(frame):
    """Real history stacked with labelled synthetic history has no state on its rows."""
    frame.loc[7, "state"] = None
    assert check(frame, allow_missing=True) == []
    frame.loc[5, "state"] = "exploded"
    p = only(frame, "unknown_state", allow_missing=True)
    assert p.count == 1 and "['exploded']" in p.message


def test_deprecated_column_names_its_replacement(frame):
    frame = frame.rename(columns={"mem_used_pct": "mem_pct"})
    problems = check(frame)
    assert [p.kind for p in problems] == ["deprecated_column", "missing_column"]
    assert problems[0].message == "column 'mem_pct' is a deprecated name; use mem_used_pct"
    assert "metric columns missing: mem_used_pct" in problems[1].message


def test_deprecated_column_without_replacement(frame):
    frame["latency_ms"] = 12.0
    p = only(frame, "deprecated_column")
    assert "'latency_ms' is a deprecated name with no LINBORG replacement; drop it" in p.message


def test_status_column_points_to_state(frame):
    frame["status"] = "ok"
    assert "use state" in only(frame, "deprecated_column").message


def test_duplicate_column_names(frame):
    frame = pd.concat([frame, frame[["mem_used_pct"]]], axis=1)
    p = only(frame, "duplicate_column")
    assert "columns appear more than once: mem_used_pct" in p.message


def test_empty_table(frame):
    p = only(frame.iloc[:0], "empty")
    assert (p.count, p.message) == (0, "the table has no rows")


def test_empty_table_without_columns():
    problems = check(pd.DataFrame())
    assert {p.kind for p in problems} == {"missing_column", "empty"}


@pytest.mark.parametrize("thing", [None, [1, 2], {"timestamp": []}, np.zeros((2, 3))])
def test_not_a_dataframe(thing):
    p = only(thing, "not_a_table")
    assert p.message == f"expected a pandas DataFrame, got {type(thing).__name__}"
    with pytest.raises(ValidationError, match="expected a pandas DataFrame"):
        validate(thing)


def test_examples_are_limited_to_three(frame):
    frame["mem_used_pct"] = 101.0
    p = only(frame, "out_of_range")
    assert p.count == len(frame)
    assert p.message.count(" value 101.0") == 3


# --- many problems at once ------------------------------------------------------------------


def test_many_problems_are_reported_together_in_one_error(frame):
    frame = frame.drop(columns=["swap_used_pct"])
    frame["cpu_temp_c"] = 1.0
    frame.loc[1, "mem_used_pct"] = np.nan
    frame.loc[2, "net_in_mb_s"] = np.inf
    frame.loc[3, "cpu_user_pct"] = 150.0
    frame.loc[13, "profile"] = "gpu_box"
    frame.loc[14, "state"] = "exploded"
    frame.loc[30, "timestamp"] += pd.Timedelta(minutes=2)
    frame = pd.concat([frame, frame.iloc[[20]]], ignore_index=True)
    with pytest.raises(ValidationError) as err:
        validate(frame, source="fleet.parquet")
    problems = err.value.problems
    assert {p.kind for p in problems} >= {
        "missing_column",
        "extra_column",
        "nan",
        "inf",
        "out_of_range",
        "unknown_profile",
        "inconsistent_profile",
        "unknown_state",
        "duplicate_row",
        "irregular_step",
    }
    text = str(err.value)
    assert text.startswith(f"fleet.parquet breaks the LINBORG contract ({len(problems)} problems)")
    for p in problems:
        assert f"[{p.kind}] {p.message}" in text
    assert isinstance(err.value, ContractError)
    assert check(frame) == problems


# --- allow_missing --------------------------------------------------------------------------


def test_allow_missing_accepts_absent_columns_nan_and_whole_step_gaps(frame_factory):
    frame = frame_factory(steps=24)
    frame = frame.drop(columns=["swap_used_pct", "java_cpu_pct"])
    frame = frame.drop(index=[3, 4, 5, 30]).reset_index(drop=True)  # 20- and 10-minute gaps
    frame.loc[[0, 40], "mem_used_pct"] = np.nan
    assert check(frame, allow_missing=True) == []
    assert kinds(frame) == {"missing_column", "nan", "irregular_step"}


def test_allow_missing_accepts_a_table_of_keys_only(frame):
    keys = frame[["timestamp", "server", "profile"]]
    assert check(keys, allow_missing=True) == []


def test_allow_missing_still_rejects_inf_off_grid_and_out_of_range(frame):
    frame.loc[1, "mem_used_pct"] = np.inf
    frame.loc[2, "cpu_sys_pct"] = 101.0
    frame.loc[4, "timestamp"] += pd.Timedelta(seconds=30)
    problems = check(frame, allow_missing=True)
    assert {p.kind for p in problems} == {"inf", "out_of_range", "irregular_step"}
    step = next(p for p in problems if p.kind == "irregular_step")
    assert "not a whole number of 5 minutes" in step.message
    assert "2026-01-05T00:20:30Z" in step.message


def test_allow_missing_still_rejects_duplicates_and_unknown_names(frame):
    frame.loc[0, "state"] = "exploded"
    frame = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)
    frame["mem_pct"] = 1.0
    assert kinds(frame, allow_missing=True) == {
        "unknown_state",
        "duplicate_row",
        "deprecated_column",
    }


def test_allow_missing_still_requires_key_columns(frame):
    p = only(frame.drop(columns="profile"), "missing_column", allow_missing=True)
    assert "required column 'profile' is missing" in p.message


def test_every_metric_is_range_checked(frame_factory):
    for name in METRIC_NAMES:
        bad = frame_factory(servers=["ppgen001"], steps=2)
        bad.loc[1, name] = -1.0
        p = only(bad, "out_of_range")
        assert p.message.startswith(f"'{name}' has 1 values outside"), name
