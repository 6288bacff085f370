"""The shipped default model: it beats seasonal naive on fresh held-out data, and it records the
training that scripts/train_default.sh runs."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linborg.bundle import load_bundle
from linborg.features import dense_frame
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.parquet import read_metrics, write_metrics
from linborg.trainer.evaluate import accuracy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "default"
_spec = importlib.util.spec_from_file_location("real_subset", ROOT / "scripts" / "real_subset.py")
real_subset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(real_subset)


def test_default_model_beats_seasonal_naive_on_unseen_servers():
    forecaster = load_bundle(DEFAULT_MODEL)
    training = forecaster.spec["training"]
    # scripts/train_default.sh: the default preset from scratch, then two finetune stages
    stages = [step["preset"] for step in training.get("lineage", [])] + [training["preset"]]
    assert stages == ["default", "finetune", "finetune"], stages
    # A seed, a time window and server names the model never saw.
    fleet = build_fleet(
        {p: 2 for p in ("web_api", "database", "ml_compute", "risk_analytics")}, first=80
    )
    frame, _, _ = simulate(fleet, 2024, dt.datetime(2026, 6, 1, tzinfo=dt.UTC), int(2.5 * 288))
    names, profiles, values, first = dense_frame(frame)
    errors, origins = accuracy(forecaster, names, profiles, values, first, 36, set())
    assert origins >= 4
    h8 = errors[errors["horizon"] == "8h"]
    model_mae = h8.groupby("metric")["ae_tft"].mean()
    naive_mae = h8.groupby("metric")["ae_seasonal_naive"].mean()
    mase = (model_mae / naive_mae).replace(np.inf, np.nan).dropna()
    assert mase.mean() < 1.0, mase.to_dict()
    assert errors["ae_tft"].mean() < errors["ae_seasonal_naive"].mean()


def script_lines(prefix: str) -> list[list[str]]:
    """Return the lines of scripts/train_default.sh that start with PREFIX, as words."""
    text = (ROOT / "scripts" / "train_default.sh").read_text().replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.startswith(prefix)]


def script_commands(name: str) -> list[list[str]]:
    """Return the `linborg NAME ...` command lines of scripts/train_default.sh, as words."""
    return [words[1:] for words in script_lines(".venv/bin/linborg ") if words[1] == name]


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_the_shipped_bundle_records_the_training_that_the_script_runs():
    training = load_bundle(DEFAULT_MODEL).spec["training"]
    history = [w for w in script_commands("generate") if w[1] == "history"]
    stage1, stage2, stage3, _ = script_commands("train")
    assert option(stage3, "--out") == "models/default"
    assert option(stage2, "--init") == option(stage1, "--out")
    assert option(stage3, "--init") == option(stage2, "--out")
    data = option(stage1, "--data")
    assert option(stage2, "--data") == data == option(history[0], "--out")
    # stage 3: the synthetic fleet plus the real VMs that scripts/real_subset.py writes
    (subset,) = script_lines(".venv/bin/python scripts/real_subset.py")
    real = subset[-1]
    assert [w for w in stage3 if w != "--data" and w in (data, real)] == [data, real]
    assert training["source"] == f"Parquet {data} + Parquet {real}"
    # the generated fleet's seed is recorded for every generated server; the real VMs have none
    seeds = training["server_seeds"]
    assert {v for v in seeds.values() if v is not None} == {int(option(history[0], "--seed"))}
    assert sum(v is None for v in seeds.values()) == real_subset.VMS
    parent1, parent2 = training["lineage"]
    assert parent1["preset"] == option(stage1, "--preset")
    assert parent1["source"] == parent2["source"] == f"Parquet {data}"
    assert parent2["preset"] == option(stage2, "--preset")
    assert training["preset"] == option(stage3, "--preset")
    assert training["seed"] == int(option(stage3, "--seed"))
    assert training["hyperparameters"]["max_minutes"] == float(option(stage3, "--max-minutes"))
    assert training["hyperparameters"]["learning_rate"] == float(option(stage3, "--learning-rate"))
    assert training["incident_window_share"] == float(option(stage3, "--incident-share"))
    assert training["incident_metric_weight"] == float(option(stage3, "--incident-weight"))
    assert parent2["seconds"] < 60 * (float(option(stage2, "--max-minutes")) + 5)
    # the level inputs: stage 1 builds the network with them, every stage names them
    assert all("--level-inputs" in stage for stage in (stage1, stage2, stage3))
    assert training["level_inputs"] is True
    assert load_bundle(DEFAULT_MODEL).spec["hparams"]["level_inputs"] is True


def test_the_shipped_plain_host_network_records_the_training_that_the_script_runs():
    forecaster = load_bundle(DEFAULT_MODEL)
    assert forecaster.plain is not None
    *_, plain = script_commands("train")
    (attach,) = script_commands("attach-plain")
    assert option(attach, "--model") == "models/default"
    assert option(attach, "--plain") == option(plain, "--out")
    assert option(plain, "--data") == "$REAL" and option(plain, "--holdout-days") == "7"
    (real,) = [
        line.split(":-", 1)[1].rstrip("}")
        for line in (ROOT / "scripts" / "train_default.sh").read_text().splitlines()
        if line.startswith("REAL=")
    ]
    training = forecaster.plain.spec["training"]
    assert training["source"] == f"Parquet {real}, without its last 7 days"
    assert training["preset"] == option(plain, "--preset") and training["init"] is None
    assert training["seed"] == int(option(plain, "--seed"))
    assert training["threads"] == int(option(plain, "--threads"))
    assert training["hyperparameters"]["max_minutes"] == float(option(plain, "--max-minutes"))
    assert training["log_loss"] is ("--log-loss" in plain)
    assert training["selected_by"] == option(plain, "--select-by")
    assert training["average_last"] == int(option(plain, "--average-last"))
    assert training["horizon_decay"] == float(option(plain, "--horizon-decay"))
    # only real VMs: every server of the real set, none of them generated
    assert training["profiles"] == {"generic": 144}
    assert set(training["server_seeds"].values()) == {None}


def test_real_subset_keeps_the_drawn_vms_without_the_held_out_week(tmp_path):
    fleet = build_fleet({"generic": 4}, first=1)
    frame, _, _ = simulate(fleet, 5, dt.datetime(2013, 7, 1, tzinfo=dt.UTC), 9 * 288)
    real = tmp_path / "real.parquet"
    write_metrics(frame.drop(columns="state", errors="ignore"), real)
    last = frame["timestamp"].max()
    for vms in (2, 4):
        out = tmp_path / f"sub{vms}.parquet"
        real_subset.main(str(real), str(out), vms)
        sub, _ = read_metrics(out, allow_missing=True)
        assert sub["server"].nunique() == vms
        assert sub["timestamp"].max() == last - pd.Timedelta(days=real_subset.HOLDOUT_DAYS)
    # the same draw every run
    real_subset.main(str(real), str(tmp_path / "again.parquet"), 2)
    again, _ = read_metrics(tmp_path / "again.parquet", allow_missing=True)
    first, _ = read_metrics(tmp_path / "sub2.parquet", allow_missing=True)
    assert set(again["server"]) == set(first["server"])
    with pytest.raises(SystemExit, match="VMS must be 1 to 4, not 5"):
        real_subset.main(str(real), str(tmp_path / "x.parquet"), 5)


def test_the_script_stops_before_training_when_the_real_set_is_missing(tmp_path):
    missing = tmp_path / "no-such.parquet"
    env = {**os.environ, "LINBORG_REAL_DATA": str(missing)}
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "train_default.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert f"the real set {missing} is not there" in run.stderr
    assert "bootstrap" not in run.stderr and "train:" not in run.stderr


def test_the_shipped_risk_calibration_comes_from_the_scripts_fresh_fleets():
    (cal,) = script_commands("calibrate-risk")
    assert option(cal, "--model") == "models/default"
    sources = [cal[i + 1] for i, w in enumerate(cal) if w == "--data"]
    spec = load_bundle(DEFAULT_MODEL).spec
    assert spec["risk_calibration"]["sources"] == sources
    assert set(spec["risk_calibration"]["healthy_risk"]) >= {"web_api", "database", "ml_compute"}
    made = {option(w, "--out"): w for w in script_commands("generate")}
    history = [w for w in script_commands("generate") if w[1] == "history"]
    heldout = made["out/heldout.parquet"]
    used = {option(history[0], "--seed"), option(heldout, "--seed")}
    for path in sources:
        # a fleet the script generates, with a seed and start that neither training nor the
        # held-out evaluation uses
        assert option(made[path], "--seed") not in used
        assert option(made[path], "--start") != option(heldout, "--start")
    # calibrated before the evaluation that writes the shipped report
    lines = [w[1] for w in script_lines(".venv/bin/linborg ")]
    assert lines.index("calibrate-risk") < lines.index("evaluate")
