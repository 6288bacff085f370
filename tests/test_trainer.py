"""Trainer: tiny TFT training, the safetensors bundle, inference paths, missing metrics."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linborg.bundle import SPEC, WEIGHTS, BundleError, load_bundle, save_bundle
from linborg.contract import METRIC_NAMES, ContractError
from linborg.features import (
    ENCODER_STEPS,
    HORIZON_STEPS,
    build_model_frame,
    time_index,
    windows_from_frame,
)
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.trainer.train import check_trainable, train

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
FLEET = {"web_api": 1, "database": 1, "ml_compute": 1, "generic": 1}


@pytest.fixture(scope="module")
def history():
    frame, _, _ = simulate(build_fleet(FLEET), 3, START, 3 * 288)
    return frame


@pytest.fixture(scope="module")
def tiny(history, tmp_path_factory):
    """A tiny model trained in seconds, saved as a bundle."""
    model, summary = train(history, "tiny", seed=1, progress=False, log=lambda m: None)
    path = save_bundle(model, tmp_path_factory.mktemp("bundle") / "tiny", summary)
    return model, summary, path


@pytest.fixture(scope="module")
def unseen():
    """Windows of servers the model never saw (other names, other seed)."""
    frame, _, _ = simulate(build_fleet(FLEET, first=7), 11, START, 2 * 288)
    end = int(time_index(frame["timestamp"].max()))
    names, profiles, values = windows_from_frame(frame, end)
    return names, profiles, values, end


def test_bundle_holds_weights_and_plain_json(tiny):
    _, summary, path = tiny
    assert sorted(p.name for p in path.iterdir()) == [SPEC, WEIGHTS]
    spec = json.loads((path / SPEC).read_text())
    assert spec["metrics"] == list(METRIC_NAMES) and spec["quantiles"] == [0.1, 0.5, 0.9]
    assert spec["encoder_steps"] == 288 and spec["horizon_steps"] == 96
    assert spec["training"]["preset"] == "tiny" and spec["training"]["servers"] == 4
    assert spec["contract_version"] and spec["code_revision"]
    assert (path / WEIGHTS).read_bytes()[8:9] == b"{"  # safetensors header, not a pickle


def test_reload_in_a_fresh_process_predicts_the_same_numbers(tiny, unseen, tmp_path):
    model, spec, path = tiny
    names, profiles, values, end = unseen
    from linborg.model import Forecaster

    # The saved spec: its floors and its interval calibration, as load_bundle serves them.
    saved = json.loads((path / SPEC).read_text())
    assert saved["interval_calibration"]["windows"] > 0
    in_memory = Forecaster(model, saved).predict(values, profiles, end).values
    np.savez(tmp_path / "in.npz", values=values, profiles=np.array(profiles), end=end)
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        from linborg.bundle import load_bundle
        d = np.load({str(tmp_path / "in.npz")!r})
        f = load_bundle({str(path)!r}).predict(d["values"], list(d["profiles"]), int(d["end"]))
        np.save({str(tmp_path / "out.npy")!r}, f.values)
        assert "pytorch_forecasting" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300, cwd=tmp_path)
    reloaded = np.load(tmp_path / "out.npy")
    assert reloaded.shape == (4, 14, HORIZON_STEPS, 3)
    assert np.array_equal(reloaded, in_memory, equal_nan=True)
    assert np.isfinite(in_memory).all()  # unseen servers with every metric: all forecast


def test_direct_tensor_path_matches_the_dataset_path(tiny, history):
    import torch
    from pytorch_forecasting import TimeSeriesDataSet

    from linborg.model import Forecaster, make_dataset

    model, _, _ = tiny
    mf = build_model_frame(history)
    end = int(mf["time_idx"].max()) - HORIZON_STEPS
    part = mf[mf["time_idx"] <= end + HORIZON_STEPS]
    ds = TimeSeriesDataSet.from_parameters(make_dataset(mf).get_parameters(), part, predict=True)
    x, _ = next(iter(ds.to_dataloader(train=False, batch_size=64)))
    with torch.inference_mode():
        expected = torch.stack(list(model(x)["prediction"]), 1).numpy()
    names, profiles, values = windows_from_frame(history, end)
    f = Forecaster(model, {})
    from linborg.features import fill_window

    filled, present, _ = fill_window(values)
    got = f.raw(f.inputs(filled, present, profiles, end))
    order = [names.index(s) for s in ds.decoded_index["server"]]
    np.testing.assert_allclose(got[order], expected, rtol=1e-5, atol=1e-4)


def test_a_server_missing_metrics_gets_forecasts_for_what_it_has(tiny, unseen):
    _, _, path = tiny
    names, profiles, values, end = unseen
    values = values.copy()
    absent = ["java_cpu_pct", "back_close_wait", "front_close_wait"]
    for m in absent:
        values[0, :, METRIC_NAMES.index(m)] = np.nan
    values[1, :100, METRIC_NAMES.index("mem_used_pct")] = np.nan  # a gap, still present
    f = load_bundle(path).predict(values, profiles, end)
    for j, m in enumerate(METRIC_NAMES):
        if m in absent:
            assert not f.present[0, j] and np.isnan(f.values[0, j]).all()
        else:
            assert f.present[0, j] and np.isfinite(f.values[0, j]).all()
    j = METRIC_NAMES.index("mem_used_pct")
    assert f.present[1, j] and f.completeness[1, j] == pytest.approx(188 / 288)
    assert np.isfinite(f.values[1]).all() and f.present[2:].all()


def test_forecasts_are_ordered_and_within_range(tiny, unseen):
    _, _, path = tiny
    names, profiles, values, end = unseen
    f = load_bundle(path).predict(values, profiles, end).values
    assert (np.diff(f, axis=-1) >= 0).all()
    assert (f[:, METRIC_NAMES.index("cpu_idle_pct")] <= 100).all() and (f >= 0).all()


def _copy(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    out.mkdir()
    for p in path.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    return out


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(metrics=s["metrics"][:-1]), "metrics: missing ['uptime_days']"),
        (
            lambda s: s.update(profiles=[*s["profiles"], "gpu"]),
            "profiles: missing [], unexpected ['gpu']",
        ),
        (
            lambda s: s.update(horizon_steps=48),
            "horizon_steps: bundle has 48, this code expects 96",
        ),
        (lambda s: s.update(quantiles=[0.05, 0.5, 0.95]), "quantiles: missing [0.1, 0.9]"),
        (lambda s: s.update(contract_version="9.0.0"), "written under LINBORG contract 9.0.0"),
        (lambda s: s.update(format="other/1"), "unknown format 'other/1'"),
    ],
)
def test_a_mismatched_bundle_is_refused_with_what_differs(tiny, tmp_path, change, message):
    path = _copy(tiny[2], tmp_path)
    spec = json.loads((path / SPEC).read_text())
    change(spec)
    (path / SPEC).write_text(json.dumps(spec))
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    assert message in str(err.value)


def test_corrupt_or_incomplete_bundles_are_refused(tiny, tmp_path):
    path = _copy(tiny[2], tmp_path)
    weights = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(weights[: len(weights) // 2])
    with pytest.raises(BundleError, match="weights do not load"):
        load_bundle(path)
    (path / SPEC).write_text("{not json")
    with pytest.raises(BundleError, match="model.json is not valid JSON"):
        load_bundle(path)
    (path / WEIGHTS).unlink()
    with pytest.raises(BundleError, match="model.safetensors is missing"):
        load_bundle(path)
    with pytest.raises(BundleError, match="no such directory"):
        load_bundle(tmp_path / "nowhere")


def test_bundle_with_other_shapes_is_refused(tiny, tmp_path):
    path = _copy(tiny[2], tmp_path)
    spec = json.loads((path / SPEC).read_text())
    spec["hparams"]["hidden_size"] = 12
    (path / SPEC).write_text(json.dumps(spec))
    with pytest.raises(BundleError, match="weights do not load"):
        load_bundle(path)


def test_unusable_training_data_is_refused_clearly(history):
    one = history[history["server"] == "ppdb001"]
    with pytest.raises(ContractError, match="only 1 server; training needs at least 2"):
        check_trainable(one)
    short = history[history["timestamp"] < pd.Timestamp(START + dt.timedelta(hours=30))]
    with pytest.raises(ContractError, match="too short: no server has 480 steps"):
        check_trainable(short)
    with pytest.raises(ContractError, match="'mem_pct' is a deprecated name; use mem_used_pct"):
        check_trainable(history.rename(columns={"mem_used_pct": "mem_pct"}))
    with pytest.raises(ContractError, match="unknown preset 'huge'"):
        train(history, "huge")


def test_windows_must_have_the_model_shape(tiny):
    from linborg.model import Forecaster

    with pytest.raises(ValueError, match=r"windows must be \(servers, 288, 14\)"):
        Forecaster(tiny[0], {}).predict(np.zeros((1, 100, 14)), ["web_api"], 0)
    assert ENCODER_STEPS == 288
