"""Threshold inputs: each past step's distance to its warning level, the same in training and
serving, starting from no effect, and kept with the bundle."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import torch

from linborg.bundle import SPEC, load_bundle, save_bundle
from linborg.contract import METRIC_NAMES, ContractError
from linborg.features import (
    ENCODER_STEPS,
    HORIZON_STEPS,
    build_model_frame,
    fill_window,
    windows_from_frame,
)
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.model import (
    THRESHOLD_CLIP,
    Forecaster,
    incident_head_loss,
    make_dataset,
    threshold_features,
    threshold_levels,
)
from linborg.thresholds import load_thresholds
from linborg.trainer.train import train

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
FLEET = {"web_api": 1, "database": 1, "ml_compute": 1}
MEM = METRIC_NAMES.index("mem_used_pct")
IDLE = METRIC_NAMES.index("cpu_idle_pct")


@pytest.fixture(scope="module")
def history():
    frame, _, _ = simulate(build_fleet(FLEET), 6, START, 3 * 288)
    return frame


@pytest.fixture(scope="module")
def plain(history, tmp_path_factory):
    model, summary = train(history, "tiny", seed=3, progress=False, log=lambda m: None)
    summary["source"] = "synthetic test fleet"
    return save_bundle(model, tmp_path_factory.mktemp("thresholds") / "plain", summary)


def hand_distances(values: np.ndarray, profiles: list[str]) -> np.ndarray:
    """(servers, 288, 14): (value - warning) / (critical - warning), clipped, by hand."""
    table = load_thresholds()
    filled, present, _ = fill_window(values)
    out = np.zeros(filled.shape)
    for i, profile in enumerate(profiles):
        for j, m in enumerate(METRIC_NAMES):
            t = table.get(profile, m)
            d = (filled[i, :, j].astype(np.float64) - t.warning) / (t.critical - t.warning)
            out[i, :, j] = np.clip(d, *THRESHOLD_CLIP) * present[i, j]
    return out


def test_distances_by_hand_on_a_made_up_window():
    codes = {"nan": 0, "web_api": 1}
    table = load_thresholds().as_dict()
    levels = threshold_levels(table, codes)
    # An unknown profile gets the generic profile's levels.
    assert levels[0, 0, MEM].item() == table["generic"]["mem_used_pct"]["warning"]
    mem = table["web_api"]["mem_used_pct"]
    idle = table["web_api"]["cpu_idle_pct"]
    steps = 3
    raw = torch.zeros(1, steps, len(METRIC_NAMES))
    raw[0, :, MEM] = torch.tensor([mem["warning"], (mem["warning"] + mem["critical"]) / 2, 0.0])
    raw[0, :, IDLE] = torch.tensor([idle["critical"], idle["warning"], 100.0])
    center, scale = torch.full((1, 14), 50.0), torch.full((1, 14), 4.0)
    reals = [f"present_{m}" for m in METRIC_NAMES] + list(METRIC_NAMES)
    present = torch.ones(1, steps, 14)
    present[0, :, METRIC_NAMES.index("swap_used_pct")] = 0.0
    x = {
        "encoder_cont": torch.cat([present, (raw - center[:, None]) / scale[:, None]], 2),
        "encoder_cat": torch.ones(1, steps, 1, dtype=torch.long),
        "target_scale": [torch.stack([center[:, i], scale[:, i]], -1) for i in range(14)],
    }
    got = threshold_features(x, reals, ["profile"], levels)
    assert got.shape == (1, steps, 14)
    # memory: at warning 0, halfway 0.5, far below clipped to the lower bound
    np.testing.assert_allclose(got[0, :, MEM].numpy(), [0.0, 0.5, THRESHOLD_CLIP[0]], atol=1e-5)
    # cpu_idle_pct falls towards trouble: at critical 1, at warning 0, fully idle clipped
    np.testing.assert_allclose(got[0, :, IDLE].numpy(), [1.0, 0.0, THRESHOLD_CLIP[0]], atol=1e-5)
    # a metric the server lacks gives nothing
    assert (got[0, :, METRIC_NAMES.index("swap_used_pct")] == 0).all()


def test_distances_are_built_identically_for_training_and_serving(plain, history):
    from pytorch_forecasting import TimeSeriesDataSet

    model = load_bundle(plain).model
    model.add_threshold_inputs(load_thresholds().as_dict())
    reals, cats = list(model.hparams.x_reals), list(model.hparams.x_categoricals)
    mf = build_model_frame(history)
    end = int(mf["time_idx"].max()) - HORIZON_STEPS
    part = mf[mf["time_idx"] <= end + HORIZON_STEPS]
    ds = TimeSeriesDataSet.from_parameters(make_dataset(mf).get_parameters(), part, predict=True)
    x, _ = next(iter(ds.to_dataloader(train=False, batch_size=64)))
    training = threshold_features(x, reals, cats, model.threshold_levels).numpy()

    names, profiles, values = windows_from_frame(history, end)
    filled, present, _ = fill_window(values)
    xs = Forecaster(model, {}).inputs(filled, present, profiles, end)
    serving = threshold_features(xs, reals, cats, model.threshold_levels).numpy()

    expected = hand_distances(values, profiles)
    assert serving.shape == (3, ENCODER_STEPS, 14)
    assert np.abs(expected).max() > 0.1  # the check is not of zeros
    order = [names.index(s) for s in ds.decoded_index["server"]]
    np.testing.assert_allclose(serving, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(training, expected[order], rtol=1e-4, atol=1e-4)


def test_added_threshold_inputs_start_from_no_effect_then_tell_levels_apart(plain, history):
    end = int(build_model_frame(history)["time_idx"].max())
    _, profiles, window = windows_from_frame(history, end)
    forecaster = load_bundle(plain)
    before = forecaster.predict(window, profiles, end).values
    forecaster.model.add_threshold_inputs(load_thresholds().as_dict())
    np.testing.assert_array_equal(forecaster.predict(window, profiles, end).values, before)
    # Once the map is not zero, the same shape 10 points higher is forecast differently
    # (normalised by itself, it looked exactly alike before).
    torch.nn.init.normal_(forecaster.model.threshold_projection.weight, std=5.0)
    higher = window.copy()
    higher[:, :, MEM] = np.minimum(higher[:, :, MEM] + 10.0, 100.0)
    low = forecaster.predict(window, profiles, end).values[:, MEM, :, 1]
    high = forecaster.predict(higher, profiles, end).values[:, MEM, :, 1]
    assert np.abs(high - low).max() > 0.01


def test_training_with_threshold_inputs_keeps_the_table_and_reloads_alike(plain, history, tmp_path):
    model, summary = train(
        history, "tiny", seed=5, progress=False, log=lambda m: None, threshold_inputs=True
    )
    assert summary["threshold_inputs"] is True
    assert model.threshold_projection.weight.abs().max().item() > 0  # it trained
    out = save_bundle(model, tmp_path / "distances", {**summary, "source": "test"})
    spec = json.loads((out / SPEC).read_text())
    # The table travels with the bundle: the packaged thresholds at training time.
    assert spec["hparams"]["threshold_inputs"] == load_thresholds().as_dict()
    end = int(build_model_frame(history)["time_idx"].max())
    _, profiles, window = windows_from_frame(history, end)
    reloaded = load_bundle(out)
    filled, present, _ = fill_window(window)
    x = reloaded.inputs(filled, present, profiles, end)
    model.eval()
    with torch.inference_mode():
        direct = torch.stack(list(model(x)["prediction"]), 1).numpy()
    np.testing.assert_allclose(reloaded.raw(x), direct, rtol=1e-4, atol=1e-4)  # fused selection
    assert not hasattr(load_bundle(plain).model, "threshold_projection")


def test_incident_head_loss_by_hand():
    logits = torch.zeros(1, 2, len(METRIC_NAMES))
    logits[0, 0, MEM] = 3.0
    weight = torch.tensor([[MEM + 1.0, -(MEM + 1.0 + 1000)]])  # under way, then an aftermath
    got = incident_head_loss(logits, weight).item()
    # 27 cells at log-odds 0 with label 0, one at 3 with label 1
    expected = (27 * np.log(2.0) + np.log1p(np.exp(-3.0))) / 28
    assert got == pytest.approx(expected, rel=1e-5)


def test_training_with_the_incident_head_logs_its_loss_keeps_it_and_needs_labels(history, tmp_path):
    server = str(history["server"].iloc[0])
    day = history["timestamp"].min() + dt.timedelta(hours=26)
    incidents = [
        {
            "server": server,
            "metric": "mem_used_pct",
            "precursor_start": day.isoformat(),
            "onset": (day + dt.timedelta(hours=2)).isoformat(),
            "end": (day + dt.timedelta(hours=4)).isoformat(),
        }
    ]
    lines = []
    model, summary = train(
        history,
        "tiny",
        seed=5,
        progress=False,
        log=lines.append,
        incidents=incidents,
        incident_share=0.5,
        incident_head=20.0,
    )
    assert summary["incident_head"] == 20.0
    assert summary["epochs"][0]["incident_loss"] > 0
    assert any("incident_loss" in line for line in lines)
    out = save_bundle(model, tmp_path / "head", {**summary, "source": "test"})
    reloaded = load_bundle(out).model
    torch.testing.assert_close(model.incident_head.weight, reloaded.incident_head.weight)
    with pytest.raises(ContractError, match="needs the data's incident labels"):
        train(history, "tiny", log=lambda m: None, incident_head=1.0)
    with pytest.raises(ContractError, match="incident head weight -1.0 is below 0"):
        train(history, "tiny", log=lambda m: None, incidents=incidents, incident_head=-1.0)
