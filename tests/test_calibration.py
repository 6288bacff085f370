"""Interval calibration: fitting the band's factors, serving them, and where they come from."""

from __future__ import annotations

import datetime as dt
import json
import stat

import numpy as np
import pandas as pd
import pytest

from linborg import calibration
from linborg.app.cli import main
from linborg.bundle import SPEC, BundleError, load_bundle, save_bundle
from linborg.contract import METRIC_NAMES, METRICS_BY_NAME, ContractError
from linborg.features import ENCODER_STEPS, HORIZON_STEPS, build_model_frame, time_index
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.parquet import write_metrics
from linborg.trainer.train import train, validation_forecasts, validation_split

Z90 = 1.2815515655446004
M = len(METRIC_NAMES)
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def gaussian_case(n: int, width: dict[int, float], seed: int = 0):
    """Forecasts whose band is ``width[metric]`` times the right one, and N(p50, 1) actuals."""
    rng = np.random.default_rng(seed)
    p50 = rng.normal(50, 5, (n, M, HORIZON_STEPS))
    half = np.array([width.get(i, 1.0) for i in range(M)])[None, :, None] * Z90
    forecast = np.stack([p50 - half, p50, p50 + half], -1)
    actual = p50 + rng.normal(0, 1, p50.shape)
    return forecast, actual


def coverage(forecast, actual, metric):
    f, a = forecast[:, metric], actual[:, metric]
    return float(((a >= f[..., 0]) & (a <= f[..., 2])).mean())


def test_a_band_twice_too_wide_is_halved_and_one_too_narrow_is_widened():
    forecast, actual = gaussian_case(1500, {0: 2.0, 1: 0.7})
    fitted = calibration.fit(forecast, actual)
    lower, upper = calibration.factors(fitted)
    assert fitted["windows"] == 1500 and fitted["fitted"] == list(METRIC_NAMES)
    np.testing.assert_allclose(lower[0], 0.5, atol=0.05)
    np.testing.assert_allclose(upper[0], 0.5, atol=0.05)
    np.testing.assert_allclose(lower[1], 1 / 0.7, atol=0.1)
    np.testing.assert_allclose(upper[2], 1.0, atol=0.08)  # a right band stays
    assert coverage(forecast, actual, 0) > 0.97 and coverage(forecast, actual, 1) < 0.7
    calibration.apply(forecast, lower, upper)
    for metric in (0, 1, 2):
        assert 0.77 <= coverage(forecast, actual, metric) <= 0.83


def test_a_band_three_times_too_wide_is_narrowed_to_a_third_not_stopped_at_half():
    # uptime_days, a counter, needs this: its band was held at half and covered 0.92.
    forecast, actual = gaussian_case(1500, {0: 3.0})
    lower, upper = calibration.factors(calibration.fit(forecast, actual))
    np.testing.assert_allclose(lower[0], 1 / 3, atol=0.04)
    np.testing.assert_allclose(upper[0], 1 / 3, atol=0.04)
    calibration.apply(forecast, lower, upper)
    assert 0.77 <= coverage(forecast, actual, 0) <= 0.83


def test_p50_never_moves_and_factors_stay_within_their_bounds():
    forecast, actual = gaussian_case(300, {3: 10.0, 4: 0.05})
    p50 = forecast[..., 1].copy()
    lower, upper = calibration.factors(calibration.fit(forecast, actual))
    assert lower[3].min() == calibration.BOUNDS[0] and upper[4].max() == calibration.BOUNDS[1]
    calibration.apply(forecast, lower, upper)
    np.testing.assert_array_equal(forecast[..., 1], p50)


def test_a_metric_with_too_few_windows_keeps_its_band():
    forecast, actual = gaussian_case(calibration.MIN_WINDOWS + 5, {0: 2.0, 5: 2.0})
    actual[6:, 5] = np.nan  # metric 5 has only 6 finite actuals per step
    fitted = calibration.fit(forecast, actual)
    lower, upper = calibration.factors(fitted)
    assert "mem_used_pct" not in fitted["fitted"] and "cpu_user_pct" in fitted["fitted"]
    assert (lower[5] == 1).all() and (upper[5] == 1).all()
    assert upper[0].mean() < 0.7
    empty = calibration.fit(forecast[:0], actual[:0])
    assert empty["fitted"] == [] and empty["windows"] == 0


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda c: c["lower"].pop("uptime_days"), "name each of the 14 metrics"),
        (lambda c: c["upper"].__setitem__("swap_used_pct", [1.0] * 95), "96 factors"),
        (lambda c: c["upper"].__setitem__("swap_used_pct", [3.0] * 96), "outside 0.25-2.0"),
        (lambda c: c["lower"].__setitem__("cpu_sys_pct", ["x"] * 96), "non-numbers"),
    ],
)
def test_a_malformed_calibration_is_refused_with_the_reason(change, words):
    good = {side: {m: [1.0] * HORIZON_STEPS for m in METRIC_NAMES} for side in ("lower", "upper")}
    assert calibration.factors(good) is not None and calibration.factors(None) is None
    change(good)
    with pytest.raises(ContractError, match=words):
        calibration.factors(good)


class StepForecaster:
    """A fake: forecasts every window as its last value, band +-1; records the window ends."""

    calibration = None

    def __init__(self):
        self.ends = []

    def predict(self, window, profiles, end, timezone="UTC", servers=None):
        self.ends.append(int(end))
        last = window[:, -1, :]
        p50 = np.repeat(last[:, :, None], HORIZON_STEPS, axis=2)

        class F:
            values = np.stack([p50 - 1, p50, p50 + 1], -1)

        return F


def ramp_frame(servers=("ppweb001", "ppdb001"), days=4):
    """Every metric of every server holds the step's own time index."""
    stamps = pd.date_range(START, periods=days * 288, freq="5min", tz="UTC")
    rows = []
    for s, prof in zip(servers, ("web_api", "database"), strict=True):
        part = pd.DataFrame({"timestamp": stamps, "server": s, "profile": prof})
        for m in METRIC_NAMES:
            part[m] = time_index(stamps).astype(float)
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def test_validation_windows_forecast_only_the_held_out_end_of_each_history():
    frame = ramp_frame()
    split = validation_split(build_model_frame(frame))
    fake = StepForecaster()
    forecasts, actuals = validation_forecasts(fake, frame, split)
    start = int(split.iloc[0])
    assert len(set(split.to_numpy())) == 1
    assert fake.ends and min(fake.ends) == start - 1  # the first origin: one step before
    assert all((e - fake.ends[0]) % 37 == 0 for e in fake.ends)  # co-prime with a day
    assert max(fake.ends) + HORIZON_STEPS <= int(time_index(frame["timestamp"]).max())
    assert forecasts.shape == (2 * len(fake.ends), M, HORIZON_STEPS, 3)
    # Each actual is the step after its origin: (end + 1 ... end + 96) for every metric.
    np.testing.assert_array_equal(actuals[0, 3], np.arange(1, HORIZON_STEPS + 1) + start - 1)
    few, _ = validation_forecasts(StepForecaster(), frame, split, limit=2)
    assert 0 < len(few) <= 2 * 2  # wider stride: at most the limit, rounded to whole origins


def test_copies_with_absent_metrics_are_left_out_of_calibration():
    frame = ramp_frame()
    split = validation_split(build_model_frame(frame))
    split.loc["ppweb001~no_cpu_user_pct"] = split.iloc[0]
    fake = StepForecaster()
    forecasts, _ = validation_forecasts(fake, frame, split)
    assert len(forecasts) == 2 * len(fake.ends)


@pytest.fixture(scope="module")
def history():
    frame, _, _ = simulate(build_fleet({"web_api": 1, "database": 1, "generic": 1}), 4, START, 864)
    return frame


@pytest.fixture(scope="module")
def tiny(history, tmp_path_factory):
    model, summary = train(history, "tiny", seed=3, progress=False, log=lambda m: None)
    return save_bundle(model, tmp_path_factory.mktemp("c") / "tiny", summary)


def test_train_stores_the_calibration_at_the_top_of_the_bundle_and_how_it_was_fitted(tiny):
    spec = json.loads((tiny / SPEC).read_text())
    interval = spec["interval_calibration"]
    assert set(interval["lower"]) == set(METRIC_NAMES)
    assert all(len(v) == HORIZON_STEPS for v in interval["upper"].values())
    assert spec["training"]["interval_calibration"]["windows"] == interval["windows"] > 0
    assert "lower" not in spec["training"]["interval_calibration"]
    assert load_bundle(tiny).calibration is not None


def test_the_served_band_is_the_networks_scaled_by_the_bundles_factors(tiny, history, tmp_path):
    plain = load_bundle(tiny)
    plain.calibration = None
    scaled = load_bundle(tiny)
    lower = np.full((M, HORIZON_STEPS), 1.0)
    upper = np.full((M, HORIZON_STEPS), 2.0)
    scaled.calibration = (lower, upper)
    window = np.stack(
        [
            history[history["server"] == s][list(METRIC_NAMES)].to_numpy()[-ENCODER_STEPS:]
            for s in ("ppweb001", "ppdb001", "ppgen001")
        ]
    )
    end = int(time_index(history["timestamp"]).max())
    profiles = ["web_api", "database", "generic"]
    a = plain.predict(window, profiles, end).values
    b = scaled.predict(window, profiles, end).values
    np.testing.assert_allclose(b[..., 1], a[..., 1])  # p50 unchanged
    np.testing.assert_allclose(b[..., 0], a[..., 0])  # lower side factor 1
    hi = np.array([float(METRICS_BY_NAME[m].max) for m in METRIC_NAMES])
    unclipped = (a[..., 1] + 2 * (a[..., 2] - a[..., 1])) < hi[None, :, None] - 1e-3
    want = a[..., 1] + 2 * (a[..., 2] - a[..., 1])
    np.testing.assert_allclose(b[..., 2][unclipped], want[unclipped], rtol=1e-5, atol=1e-5)
    assert unclipped.mean() > 0.5


def test_a_bundle_with_a_malformed_calibration_is_refused_at_load(tiny, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad)
    spec = json.loads((bad / SPEC).read_text())
    spec["interval_calibration"]["upper"]["load_average"] = [9.0] * HORIZON_STEPS
    (bad / SPEC).write_text(json.dumps(spec))
    with pytest.raises(BundleError, match="outside 0.25-2.0"):
        load_bundle(bad)


def test_calibrate_refits_a_bundle_on_your_history_and_keeps_it_readable(
    tiny, history, tmp_path, capsys
):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(tiny, bundle)
    spec = json.loads((bundle / SPEC).read_text())
    spec["interval_calibration"]["upper"]["cpu_user_pct"] = [2.0] * HORIZON_STEPS
    (bundle / SPEC).write_text(json.dumps(spec))
    data = tmp_path / "h.parquet"
    write_metrics(history, data)
    assert main(["calibrate", "--model", str(bundle), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"calibrated {bundle} on " in out and "coverage" in out
    after = json.loads((bundle / SPEC).read_text())
    assert after["interval_calibration"]["upper"]["cpu_user_pct"] != [2.0] * HORIZON_STEPS
    assert after["training"]["interval_calibration"]["source"].startswith("Parquet ")
    assert stat.S_IMODE((bundle / SPEC).stat().st_mode) == 0o644
    assert load_bundle(bundle).calibration is not None
    # A bundle trained on two files is calibrated on the same two; evaluate still takes one.
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_metrics(history[history["server"] == "ppweb001"], first)
    write_metrics(history[history["server"] != "ppweb001"], second)
    both = ["--data", str(first), "--data", str(second)]
    assert main(["calibrate", "--model", str(bundle), *both]) == 0
    assert f"calibrated {bundle} on " in capsys.readouterr().out
    two = json.loads((bundle / SPEC).read_text())["training"]["interval_calibration"]
    assert two["source"] == f"Parquet {first} + Parquet {second}"
    assert two["windows"] == after["training"]["interval_calibration"]["windows"]
    assert main(["evaluate", "--model", str(bundle), *both, "--out", str(tmp_path / "e")]) == 2
    assert "evaluate reads one --data file" in capsys.readouterr().err
    # Too little history to hold out a horizon after a day of context: refused, nothing written.
    short = tmp_path / "short.parquet"
    write_metrics(history[history["timestamp"] < START + dt.timedelta(days=1.2)], short)
    before = (bundle / SPEC).read_text()
    assert main(["calibrate", "--model", str(bundle), "--data", str(short)]) == 2
    assert "too short" in capsys.readouterr().err
    assert (bundle / SPEC).read_text() == before
    # A bundle with a plain-host network: each network's band is fitted on its own servers.
    shutil.copytree(tiny, bundle / "plain")
    plain_before = (bundle / "plain" / SPEC).read_text()
    assert main(["calibrate", "--model", str(bundle), "--data", str(data)]) == 0
    assert f"calibrated {bundle} on " in capsys.readouterr().out
    assert (bundle / "plain" / SPEC).read_text() == plain_before  # no plain host in the data
    vms = history.assign(
        server=history["server"].astype(str).map({"ppweb001": "vm-1", "ppdb001": "vm-2"}),
        profile="generic",
    )
    mixed = tmp_path / "mixed.parquet"
    write_metrics(pd.concat([history, vms[vms["server"].notna()]], ignore_index=True), mixed)
    main_before = (bundle / SPEC).read_text()
    assert main(["calibrate", "--model", str(bundle), "--data", str(mixed)]) == 0
    said = capsys.readouterr().out
    assert f"calibrated {bundle} on " in said and f"calibrated {bundle / 'plain'} on " in said
    plain_after = json.loads((bundle / "plain" / SPEC).read_text())
    assert (bundle / "plain" / SPEC).read_text() != plain_before
    assert plain_after["training"]["interval_calibration"]["source"] == f"Parquet {mixed}"
    assert (bundle / SPEC).read_text() != main_before
    assert load_bundle(bundle).plain.calibration is not None
