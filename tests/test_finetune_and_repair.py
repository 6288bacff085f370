"""Real data is messy (the repair policy), fine-tuning from a bundle, bundle file modes."""

from __future__ import annotations

import datetime as dt
import json
import stat

import numpy as np
import pandas as pd
import pytest
import torch

from linborg.bundle import SPEC, WEIGHTS, load_bundle, save_bundle
from linborg.contract import ContractError
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.model import PRESETS
from linborg.parquet import read_metrics, write_metrics
from linborg.trainer.train import train
from linborg.validate import tidy

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
FLEET = {"web_api": 1, "database": 1, "generic": 1}


@pytest.fixture(scope="module")
def history():
    frame, _, _ = simulate(build_fleet(FLEET), 4, START, 3 * 288)
    return frame


@pytest.fixture(scope="module")
def parent(history, tmp_path_factory):
    model, summary = train(history, "tiny", seed=3, progress=False, log=lambda m: None)
    summary["source"] = "synthetic test fleet"
    return save_bundle(model, tmp_path_factory.mktemp("b") / "parent", summary)


def test_out_of_range_samples_become_missing_and_are_counted(history):
    messy = history.copy()
    messy.loc[messy.index[:3], "cpu_user_pct"] = 111.7
    messy.loc[messy.index[3], "mem_used_pct"] = -2.0
    messy.loc[messy.index[4], "net_in_mb_s"] = np.inf
    fixed, counts = tidy(messy)
    assert counts == {"out_of_range": 4, "inf": 1, "off_grid": 0, "merged": 0}
    assert fixed["cpu_user_pct"].iloc[:3].isna().all()
    assert np.isnan(fixed["mem_used_pct"].iloc[3]) and np.isnan(fixed["net_in_mb_s"].iloc[4])
    assert len(fixed) == len(messy)
    # Untouched samples stay as they were.
    assert fixed["cpu_user_pct"].iloc[5:].equals(messy["cpu_user_pct"].iloc[5:])


def test_off_grid_timestamps_snap_to_the_grid_and_collisions_are_merged():
    ts = pd.to_datetime(
        [
            "2026-01-05 00:00:07",
            "2026-01-05 00:04:55",
            "2026-01-05 00:05:40",
            "2026-01-05 00:10:00",
        ],
        utc=True,
    )
    frame = pd.DataFrame(
        {
            "timestamp": ts,
            "server": ["a"] * 4,
            "profile": ["generic"] * 4,
            "cpu_user_pct": [10.0, 20.0, 40.0, 50.0],
        }
    )
    fixed, counts = tidy(frame)
    assert counts["off_grid"] == 3  # 00:00:07 -> 00:00, 00:04:55 and 00:05:40 -> 00:05
    assert counts["merged"] == 1  # two samples shared 00:05 and became one
    assert fixed["timestamp"].dt.strftime("%H:%M").tolist() == ["00:00", "00:05", "00:10"]
    assert fixed["cpu_user_pct"].tolist() == [10.0, 30.0, 50.0]


def test_a_file_with_a_few_bad_samples_is_read_for_training_not_refused(history, tmp_path):
    path = write_metrics(history, tmp_path / "h.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    frame = table.to_pandas()
    frame.loc[frame.index[:2], "cpu_user_pct"] = 105.0
    # Written as a user's own script would, without the contract check.
    pq.write_table(
        __import__("pyarrow")
        .Table.from_pandas(frame, preserve_index=False)
        .replace_schema_metadata(table.schema.metadata),
        path,
    )
    with pytest.raises(ContractError, match="outside"):
        read_metrics(path, allow_missing=True)
    got, _ = read_metrics(path, allow_missing=True, repair=True)
    assert got.attrs["repaired"]["out_of_range"] == 2
    assert got["cpu_user_pct"].isna().sum() == 2


def test_fine_tuning_changes_the_weights_keeps_the_contract_and_records_lineage(
    history, parent, tmp_path
):
    before = load_bundle(parent)
    model, summary = train(history, "tiny", seed=5, progress=False, log=lambda m: None, init=parent)
    out = save_bundle(model, tmp_path / "child", summary)
    child = load_bundle(out)
    a = dict(before.model.named_parameters())
    b = dict(child.model.named_parameters())
    assert a.keys() == b.keys()
    assert all(a[k].shape == b[k].shape for k in a)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # it learned something
    spec = json.loads((out / SPEC).read_text())
    parent_spec = json.loads((parent / SPEC).read_text())
    assert spec["hparams"] == parent_spec["hparams"]  # same network
    assert spec["reals_order"] == parent_spec["reals_order"]
    assert spec["training"]["init"] == str(parent)
    lineage = spec["training"]["lineage"]
    assert len(lineage) == 1 and lineage[0]["bundle"] == str(parent)
    assert lineage[0]["source"] == "synthetic test fleet"


def test_a_learning_rate_replaces_the_presets_and_a_bad_one_is_refused(history, parent, tmp_path):
    model, summary = train(
        history, "tiny", seed=5, progress=False, log=lambda m: None, init=parent, learning_rate=3e-4
    )
    assert summary["hyperparameters"]["learning_rate"] == 3e-4
    assert PRESETS["tiny"]["learning_rate"] != 3e-4
    # the network's hparams, which pytorch-forecasting builds the optimiser from
    assert model.hparams.learning_rate == 3e-4
    child = load_bundle(save_bundle(model, tmp_path / "child", summary))
    assert child.spec["training"]["hyperparameters"]["learning_rate"] == 3e-4
    for bad in (0.0, -0.01):
        with pytest.raises(ContractError, match="learning rate"):
            train(history, "tiny", progress=False, log=lambda m: None, learning_rate=bad)


def test_max_epochs_replaces_the_presets_cap_and_the_lineage_counts_the_parents_epochs(
    history, parent, tmp_path
):
    assert PRESETS["tiny"]["max_epochs"] == 1
    model, summary = train(
        history, "tiny", seed=5, progress=False, log=lambda m: None, init=parent, max_epochs=3
    )
    assert summary["hyperparameters"]["max_epochs"] == 3
    # the tiny preset stops after one epoch; early stopping (patience 1) ends a run after two
    # epochs at the soonest, so more than one epoch ran and never more than three
    assert 2 <= len(summary["epochs"]) <= 3
    child = load_bundle(save_bundle(model, tmp_path / "child", summary))
    (step,) = child.spec["training"]["lineage"]
    parent_training = load_bundle(parent).spec["training"]
    assert step["epochs"] == len(parent_training["epochs"]) == 1
    assert step["max_epochs"] == 1
    assert step["seed"] == 3
    for bad in (0, -2):
        with pytest.raises(ContractError, match="max epochs"):
            train(history, "tiny", progress=False, log=lambda m: None, max_epochs=bad)


def test_incident_share_and_weight_are_options_that_fine_tuning_can_change(history, parent):
    server = str(history["server"].iloc[0])
    day = pd.Timestamp(history["timestamp"].min()) + pd.Timedelta(hours=26)
    incidents = [
        {
            "server": server,
            "metric": "disk_usage_pct",
            "precursor_start": day.isoformat(),
            "onset": (day + pd.Timedelta(hours=2)).isoformat(),
            "end": (day + pd.Timedelta(hours=3)).isoformat(),
        }
    ]
    assert all(m.incident_weight == 5.0 for m in load_bundle(parent).model.loss.metrics)
    lines = []
    model, summary = train(
        history,
        "tiny",
        seed=5,
        progress=False,
        log=lines.append,
        init=parent,
        incidents=incidents,
        incident_share=0.15,
        incident_weight=1.0,
        skip_aftermath=True,
    )
    assert summary["skip_aftermath"] is True
    assert summary["incident_window_share"] == 0.15
    assert summary["incident_metric_weight"] == 1.0
    assert all(m.incident_weight == 1.0 for m in model.loss.metrics)
    assert any(
        "drawn as 15% of batches, the incident's metric weighted 1x, its aftermath skipped" in x
        for x in lines
    )
    for bad, message in (
        ({"incident_share": 1.0}, "incident share 1.0 is not in"),
        ({"incident_weight": 0.5}, "incident weight 0.5 is below 1"),
    ):
        with pytest.raises(ContractError, match=message):
            train(history, "tiny", log=lambda m: None, incidents=incidents, **bad)


def test_bundle_files_are_readable_by_other_users(parent):
    for name in (WEIGHTS, SPEC):
        mode = stat.S_IMODE((parent / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))


def test_train_refuses_an_unknown_time_zone_and_records_the_one_given(history):
    with pytest.raises(ContractError, match="unknown time zone 'Mars/Olympus'"):
        train(history, "tiny", timezone="Mars/Olympus", log=lambda m: None)
    _, summary = train(
        history, "tiny", seed=1, progress=False, log=lambda m: None, timezone="Europe/London"
    )
    assert summary["timezone"] == "Europe/London"


def test_progress_is_one_line_per_epoch_when_not_on_a_terminal(history, capsys):
    lines = []
    train(history, "tiny", seed=1, progress=True, log=lines.append)
    err = capsys.readouterr().err
    assert "\r" not in err  # no progress bar redrawn into a log
    assert sum(line.startswith("train: epoch ") for line in lines) == 1  # tiny: 1 epoch


def test_holdout_days_split_a_file_into_training_and_scored_days(history):
    import argparse

    from linborg.app.train import _hold_out, cmd_evaluate, cmd_train

    last = history["timestamp"].max()  # 3 days of history, 5-minute steps
    train_part = _hold_out(history, argparse.Namespace(holdout_days=1, func=cmd_train))
    assert train_part["timestamp"].max() == last - pd.Timedelta(days=1)
    scored = _hold_out(history, argparse.Namespace(holdout_days=1, func=cmd_evaluate))
    # The last day, plus one day before it as context: no step overlaps training's last.
    assert scored["timestamp"].min() == last - pd.Timedelta(days=2) + pd.Timedelta(minutes=5)
    assert scored["timestamp"].max() == last
    first_held_out = last - pd.Timedelta(days=1) + pd.Timedelta(minutes=5)
    assert (train_part["timestamp"] < first_held_out).all()
    with pytest.raises(ContractError, match="leaves nothing to train on"):
        _hold_out(history, argparse.Namespace(holdout_days=5, func=cmd_train))


def test_validation_holds_out_the_end_of_each_servers_own_history(history):
    from linborg.features import build_model_frame
    from linborg.trainer.train import VALIDATION_SHARE, validation_split

    old = history.copy()
    old["server"] = old["server"].astype(str) + "-2013"
    old["timestamp"] = old["timestamp"] - pd.Timedelta(days=13 * 365)
    mf = build_model_frame(pd.concat([history, old], ignore_index=True))
    split = validation_split(mf)
    last = mf.groupby("server")["time_idx"].max()
    span = last - mf.groupby("server")["time_idx"].min()
    for server in split.index:
        held = last[server] - split[server]
        assert held == max(96, int(span[server] * VALIDATION_SHARE))
    # Each period keeps its own split: the 2013 servers' is 13 years before the others'.
    assert split[f"{history['server'].iloc[0]}-2013"] < split[str(history["server"].iloc[0])]


def test_train_on_two_files_from_different_periods_records_each_servers_source(
    history, tmp_path, capsys
):
    from linborg.app.cli import main

    gen = tmp_path / "gen.parquet"
    write_metrics(history, gen, metadata={"generator": "linborg.generator", "seed": 4})
    real = history.copy()
    if "state" in real:  # real history has no state labels
        real = real.drop(columns="state")
    real["server"] = "vm" + real["server"].astype(str)
    real["timestamp"] = real["timestamp"] - pd.Timedelta(days=13 * 365)
    real_path = tmp_path / "real.parquet"
    write_metrics(real, real_path)
    out = tmp_path / "both"
    argv = ["train", "--data", str(gen), "--data", str(real_path), "--preset", "tiny"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    training = json.loads((out / SPEC).read_text())["training"]
    seeds = training["server_seeds"]
    assert {s: seeds[s] for s in seeds if s.startswith("vm")} == {
        "vm" + s: None for s in history["server"].astype(str).unique()
    }
    assert all(seeds[s] == 4 for s in history["server"].astype(str).unique())
    assert training["validation_windows"] > 0 and "real.parquet" in training["source"]
    # A server name in both files is refused with the reason.
    capsys.readouterr()
    assert main(["train", "--data", str(gen), "--data", str(gen), "--out", str(tmp_path / "x")])
    assert "is in both" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_fine_tune_that_no_epoch_improves_keeps_the_starting_weights(history, parent):
    messages = []
    kept, summary = train(
        history,
        "tiny",
        seed=5,
        progress=False,
        log=messages.append,
        init=parent,
        learning_rate=50.0,  # every step wrecks the network
        max_epochs=2,
    )
    start = summary["start_val_loss"]
    assert start is not None and np.isfinite(start)
    assert all(e["val_loss"] > start for e in summary["epochs"])
    assert summary["best_epoch"] == 0 and summary["best_val_loss"] == start
    before = dict(load_bundle(parent).model.named_parameters())
    assert all(torch.equal(before[k], p) for k, p in kept.named_parameters())
    assert any("keeps its weights" in m for m in messages)
    # An ordinary fine-tune beats its start and keeps the better epoch.
    _, better = train(history, "tiny", seed=5, progress=False, log=lambda m: None, init=parent)
    assert better["start_val_loss"] == pytest.approx(start)
    assert better["best_epoch"] >= 1 and better["best_val_loss"] < start


def test_a_run_from_scratch_has_no_start_to_keep(history):
    _, summary = train(history, "tiny", seed=5, progress=False, log=lambda m: None)
    assert summary["start_val_loss"] is None and summary["best_epoch"] >= 1


def test_select_by_val_log_loss_keeps_the_epoch_lowest_in_it(history, parent):
    messages = []
    _, summary = train(
        history,
        "tiny",
        seed=5,
        progress=False,
        log=messages.append,
        init=parent,
        max_epochs=3,
        select_by="val_log_loss",
    )
    assert summary["selected_by"] == "val_log_loss"
    scores = [summary["start_val_log_loss"]] + [e["val_log_loss"] for e in summary["epochs"]]
    assert all(np.isfinite(scores)) and all(e["val_loss"] > 0 for e in summary["epochs"])
    assert all(e["val_naive_ratio"] > 0 for e in summary["epochs"])
    assert summary["best_epoch"] == int(np.argmin(scores))
    assert summary["best_val_log_loss"] == min(scores)
    # Each epoch's line gives both, and the best in the chosen one.
    assert any("val_log_loss" in m and "best val_log_loss" in m for m in messages)
    with pytest.raises(ContractError, match="unknown selection"):
        train(history, "tiny", progress=False, log=lambda m: None, select_by="mae")


def test_average_states_is_the_element_wise_mean():
    from linborg.trainer.train import average_states

    states = [
        {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)},
    ]
    mean = average_states(states)
    assert mean["w"].tolist() == [2.0, 4.0]
    assert mean["n"].item() == 5  # a counter is the last state's, not averaged


def test_averaging_the_last_epochs(history, parent):
    messages = []
    _, summary = train(
        history, "tiny", seed=5, progress=False, log=messages.append, max_epochs=3, average_last=2
    )
    assert summary["averaged_epochs"] == [2, 3]
    assert np.isfinite(summary["best_val_loss"])
    assert any("mean of the last 2 epochs' weights" in m for m in messages)
    # A fine-tune whose every step wrecks the network keeps its start, averaged or not.
    kept, wrecked = train(
        history,
        "tiny",
        seed=5,
        progress=False,
        log=lambda m: None,
        init=parent,
        learning_rate=50.0,
        max_epochs=2,
        average_last=2,
    )
    assert wrecked["averaged_epochs"] is None and wrecked["best_epoch"] == 0
    before = dict(load_bundle(parent).model.named_parameters())
    assert all(torch.equal(before[k], p) for k, p in kept.named_parameters())
    with pytest.raises(ContractError, match="at least 2"):
        train(history, "tiny", progress=False, log=lambda m: None, average_last=1)
    with pytest.raises(ContractError, match="horizon decay -1 is outside 0-2"):
        train(history, "tiny", progress=False, log=lambda m: None, horizon_decay=-1)


def test_recipe_of_reads_a_bundles_loss_selection_and_averaging():
    from linborg.trainer.train import RECIPE_DEFAULTS, recipe_of

    assert recipe_of(None) == RECIPE_DEFAULTS
    assert recipe_of({"selected_by": "val_loss", "log_loss": False}) == RECIPE_DEFAULTS
    # A bundle written before average_last was recorded: the epochs it averaged.
    older = {"selected_by": "val_log_loss", "log_loss": True, "averaged_epochs": [4, 5, 6]}
    assert recipe_of(older) == {
        "select_by": "val_log_loss",
        "log_loss": True,
        "average_last": 3,
        "horizon_decay": 0.0,
    }
    assert recipe_of({"horizon_decay": 0.5})["horizon_decay"] == 0.5
    # A fine-tune that kept its start averaged nothing, yet was asked to.
    asked = {"selected_by": "val_loss", "average_last": 5, "averaged_epochs": None}
    assert recipe_of(asked)["average_last"] == 5


def _recipe(summary: dict) -> tuple:
    return (
        summary["log_loss"],
        summary["selected_by"],
        summary["average_last"],
        summary["horizon_decay"],
    )


def test_a_fine_tune_continues_with_what_its_network_was_trained_with(history, tmp_path):
    model, summary = train(
        history,
        "tiny",
        seed=5,
        progress=False,
        log=lambda m: None,
        max_epochs=2,
        log_loss=True,
        select_by="val_log_loss",
        average_last=2,
        horizon_decay=0.5,
    )
    base = save_bundle(model, tmp_path / "base", summary)
    messages = []
    _, child = train(
        history, "tiny", seed=6, progress=False, log=messages.append, max_epochs=2, init=base
    )
    assert _recipe(child) == (True, "val_log_loss", 2, 0.5)
    assert any("what it was trained with" in m and "log_loss True" in m for m in messages)
    # Options given win over the bundle's.
    _, given = train(
        history,
        "tiny",
        seed=6,
        progress=False,
        log=lambda m: None,
        max_epochs=1,
        init=base,
        log_loss=False,
        select_by="val_loss",
        average_last=0,
        horizon_decay=0.0,
    )
    assert _recipe(given) == (False, "val_loss", 0, 0.0)


def test_the_train_command_leaves_the_recipe_to_the_bundle_unless_given():
    from linborg.app.cli import build_parser

    parse = build_parser().parse_args
    plain = parse(["train", "--data", "x.parquet", "--out", "y"])
    assert (plain.log_loss, plain.select_by, plain.average_last, plain.horizon_decay) == (
        None,
        None,
        None,
        None,
    )
    decay = parse(["train", "--data", "x.parquet", "--out", "y", "--horizon-decay", "1"])
    assert decay.horizon_decay == 1.0
    given = parse(["train", "--data", "x.parquet", "--out", "y", "--no-log-loss"])
    assert given.log_loss is False
    assert parse(["train", "--data", "x.parquet", "--out", "y", "--log-loss"]).log_loss is True
