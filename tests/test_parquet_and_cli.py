"""Parquet I/O with the contract version in the metadata, and the `linborg` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_frame

from linborg.contract import CONTRACT_VERSION, METRIC_NAMES, PROFILE_NAMES, ContractError
from linborg.parquet import METADATA_KEY, read_metadata, read_metrics, write_metrics
from linborg.validate import ValidationError


def other_major() -> str:
    return f"{int(CONTRACT_VERSION.split('.')[0]) + 1}.0.0"


def write_raw(frame: pd.DataFrame, path, doc: dict | None) -> None:
    """Write ``frame`` with pyarrow alone, with ``doc`` as LINBORG metadata (None: none)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if doc is not None:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(doc).encode()}
        )
    pq.write_table(table, path)


# --- Parquet --------------------------------------------------------------------------------


def test_write_then_read_round_trips(tmp_path, frame):
    path = write_metrics(frame, tmp_path / "sub" / "fleet.parquet", {"seed": 7, "note": "x"})
    assert path == tmp_path / "sub" / "fleet.parquet"
    assert not list(path.parent.glob("*.tmp"))
    back, doc = read_metrics(path)
    pd.testing.assert_frame_equal(back, frame)
    assert doc == {"contract_version": CONTRACT_VERSION, "seed": 7, "note": "x"}
    assert read_metadata(path) == doc


def test_round_trip_with_allow_missing(tmp_path, frame):
    frame = frame.drop(columns="swap_used_pct")
    frame.loc[2, "mem_used_pct"] = np.nan
    with pytest.raises(ValidationError):
        write_metrics(frame, tmp_path / "gappy.parquet")
    path = write_metrics(frame, tmp_path / "gappy.parquet", allow_missing=True)
    with pytest.raises(ValidationError, match="metric columns missing: swap_used_pct"):
        read_metrics(path)
    back, _ = read_metrics(path, allow_missing=True)
    pd.testing.assert_frame_equal(back, frame)


def test_other_major_contract_version_is_refused(tmp_path, frame):
    path = tmp_path / "future.parquet"
    write_raw(frame, path, {"contract_version": other_major()})
    with pytest.raises(ContractError) as err:
        read_metrics(path)
    text = str(err.value)
    assert f"{path} was written under LINBORG contract {other_major()}" in text
    assert f"this is contract {CONTRACT_VERSION}" in text


def test_same_major_newer_minor_is_read(tmp_path, frame):
    path = tmp_path / "minor.parquet"
    version = CONTRACT_VERSION.split(".")[0] + ".9.0"
    write_raw(frame, path, {"contract_version": version})
    assert read_metrics(path)[1]["contract_version"] == version


def test_parquet_without_contract_version_is_refused(tmp_path, frame):
    path = tmp_path / "plain.parquet"
    write_raw(frame, path, None)
    with pytest.raises(ContractError, match="has no LINBORG contract version"):
        read_metrics(path)


def test_non_parquet_file_is_a_contract_error(tmp_path):
    path = tmp_path / "fleet.parquet"
    path.write_text("timestamp,server\n2026-01-05,ppml0001\n")
    with pytest.raises(ContractError, match=r"fleet.parquet: not a readable Parquet file \("):
        read_metrics(path)


def test_missing_file_is_a_contract_error(tmp_path):
    path = tmp_path / "nope.parquet"
    with pytest.raises(ContractError) as err:
        read_metrics(path)
    assert str(err.value) == f"{path}: no such file"


def test_write_refuses_an_invalid_frame_and_writes_nothing(tmp_path, frame):
    frame.loc[0, "cpu_idle_pct"] = 150.0
    path = tmp_path / "bad.parquet"
    with pytest.raises(ValidationError) as err:
        write_metrics(frame, path)
    assert str(err.value).startswith("table to write breaks the LINBORG contract")
    assert [p.kind for p in err.value.problems] == ["out_of_range"]
    assert not path.exists()
    assert not list(tmp_path.iterdir())


def test_read_validates_the_content(tmp_path, frame):
    frame.loc[3, "mem_used_pct"] = 120.0
    path = tmp_path / "tampered.parquet"
    write_raw(frame, path, {"contract_version": CONTRACT_VERSION})
    with pytest.raises(ValidationError) as err:
        read_metrics(path)
    assert str(err.value).startswith(f"{path} breaks the LINBORG contract")
    assert "value 120.0" in str(err.value)


# --- the `linborg` command ------------------------------------------------------------------


def linborg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "linborg", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_the_subcommands():
    done = linborg("--help")
    assert done.returncode == 0, done.stderr
    for sub in ("contract", "validate", "profile"):
        assert sub in done.stdout


def test_train_help_states_the_trainers_incident_defaults():
    from linborg.model import INCIDENT_METRIC_WEIGHT
    from linborg.trainer.train import INCIDENT_WINDOW_SHARE

    done = linborg("train", "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert f"(default {INCIDENT_WINDOW_SHARE:g})" in text.split("--incident-share")[-1]
    assert f"(default {INCIDENT_METRIC_WEIGHT:g})" in text.split("--incident-weight")[-1]


def test_contract_json():
    done = linborg("contract", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["contract_version"] == CONTRACT_VERSION
    assert len(doc["metrics"]) == 14
    assert [m["name"] for m in doc["metrics"]] == list(METRIC_NAMES)
    assert set(doc["thresholds"]) == set(PROFILE_NAMES)
    for prof in PROFILE_NAMES:
        assert set(doc["thresholds"][prof]) == set(METRIC_NAMES)
    assert doc["thresholds"]["database"]["cpu_iowait_pct"] == {"warning": 30, "critical": 45}


def test_contract_with_a_bad_threshold_file_exits_2(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("defaults:\n  cpu_pct: {warning: 1, critical: 2}\n")
    done = linborg("contract", "--thresholds", str(bad))
    assert done.returncode == 2
    assert "linborg contract: error:" in done.stderr
    assert "'cpu_pct' is a deprecated name" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_validate_a_good_file(tmp_path):
    path = write_metrics(make_frame(), tmp_path / "good.parquet")
    done = linborg("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert f"{path}: valid (contract {CONTRACT_VERSION}, 36 rows, 3 servers" in done.stdout


def test_validate_a_file_with_bad_data_exits_2(tmp_path):
    frame = make_frame()
    frame.loc[0, "mem_used_pct"] = -3.0
    path = tmp_path / "bad.parquet"
    write_raw(frame, path, {"contract_version": CONTRACT_VERSION})
    done = linborg("validate", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "linborg validate: error:" in done.stderr
    assert "[out_of_range] 'mem_used_pct' has 1 values outside [0, 100]" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_validate_a_file_that_is_not_parquet_exits_2(tmp_path):
    path = tmp_path / "notes.parquet"
    path.write_text("not parquet at all")
    done = linborg("validate", str(path))
    assert done.returncode == 2
    assert "not a readable Parquet file" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_profile_prints_profile_and_reason():
    done = linborg("profile", "ppml0001", "foo")
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert [row[:2] for row in lines] == [["ppml0001", "ml_compute"], ["foo", "generic"]]
    assert "matches" in lines[0][2]
    assert lines[1][2] == "hostname 'foo' matches no pattern; fell back to 'generic'"


def test_profile_with_custom_and_bad_patterns():
    done = linborg("profile", "db-1", "--pattern", "^db-=database")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[:2] == ["db-1", "database"]
    bad = linborg("profile", "x", "--pattern", "^(x=web_api", "--pattern", "^y=gpu")
    assert bad.returncode == 2
    assert "invalid regular expression" in bad.stderr
    assert "unknown profile 'gpu'" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout


def test_corrupt_linborg_metadata_is_a_contract_error(tmp_path, frame):
    path = tmp_path / "corrupt.parquet"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: b"{not json"}), path)
    with pytest.raises(ContractError, match="LINBORG metadata in this file is corrupt"):
        read_metadata(path)


def test_metadata_cannot_overwrite_the_contract_version(tmp_path, frame):
    path = write_metrics(frame, tmp_path / "m.parquet", {"contract_version": "0.1.0"})
    assert read_metadata(path)["contract_version"] == CONTRACT_VERSION


def test_the_command_makes_idle_openmp_threads_sleep_unless_told_otherwise():
    script = (
        "import os, contextlib, io\n"
        "from linborg.app.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['contract', '--json'])\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
    )
    assert out.stdout.strip() == "ACTIVE"
