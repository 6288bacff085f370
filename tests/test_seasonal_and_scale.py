"""The seasonal input, the level-relative scale floor and incident-window sampling."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch

from linborg.contract import METRIC_NAMES
from linborg.features import (
    ENCODER_STEPS,
    HORIZON_STEPS,
    SEASONAL_COLUMNS,
    SEASONAL_POSITIONS,
    build_model_frame,
    fill_window,
    seasonal_values,
    windows_from_frame,
)
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.model import (
    CENTER_STEPS,
    MIN_SCALE,
    Forecaster,
    floored_scale,
    make_dataset,
    with_seasonal,
)
from linborg.trainer.train import (
    incident_window_mask,
    train,
    validation_sample,
    window_sampler,
)

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
FLEET = {"web_api": 1, "database": 1, "generic": 1}
NET = METRIC_NAMES.index("net_out_mb_s")


@pytest.fixture(scope="module")
def history():
    frame, _, _ = simulate(build_fleet(FLEET), 5, START, 3 * 288)
    return frame


@pytest.fixture(scope="module")
def tiny(history):
    model, _ = train(history, "tiny", seed=2, progress=False, log=lambda m: None)
    return model


def test_seasonal_positions_are_the_same_time_yesterday():
    # Future step t+h (h = 1..96) reads the window's sample 288 steps earlier: t+h-288, which
    # sits at position 287 + h - 288 = h - 1 of a window whose last position 287 is t.
    assert SEASONAL_POSITIONS.tolist() == list(range(HORIZON_STEPS))
    window = np.arange(ENCODER_STEPS * 2, dtype=float).reshape(1, ENCODER_STEPS, 2)
    out = seasonal_values(window)
    assert out.shape == (1, HORIZON_STEPS, 2)
    assert out[0, 0].tolist() == [0.0, 1.0] and out[0, 95].tolist() == [190.0, 191.0]


def _hand_computed(values: np.ndarray) -> np.ndarray:
    """(servers, 96, 14): the normalised value 24 h before each future step, by hand."""
    filled, _, _ = fill_window(values)
    out = np.empty((len(values), HORIZON_STEPS, len(METRIC_NAMES)))
    for i in range(len(values)):
        for j, m in enumerate(METRIC_NAMES):
            w = filled[i, :, j].astype(np.float64)
            center = w[-CENTER_STEPS:].mean()
            scale = max(w.std(ddof=1), 0.02 * abs(center), MIN_SCALE[m])
            for h in range(1, HORIZON_STEPS + 1):
                out[i, h - 1, j] = (w[ENCODER_STEPS - 1 + h - 288] - center) / scale
    return out


def test_seasonal_input_is_built_identically_for_training_and_serving(tiny, history):
    from pytorch_forecasting import TimeSeriesDataSet

    mf = build_model_frame(history)
    assert (mf[list(SEASONAL_COLUMNS)] == 0).all().all()  # placeholders, filled by the model
    end = int(mf["time_idx"].max()) - HORIZON_STEPS
    part = mf[mf["time_idx"] <= end + HORIZON_STEPS]
    ds = TimeSeriesDataSet.from_parameters(make_dataset(mf).get_parameters(), part, predict=True)
    x, _ = next(iter(ds.to_dataloader(train=False, batch_size=64)))
    reals = list(tiny.hparams.x_reals)
    cols = [reals.index(c) for c in SEASONAL_COLUMNS]
    training = with_seasonal(x, reals)["decoder_cont"][..., cols].numpy()

    names, profiles, values = windows_from_frame(history, end)
    f = Forecaster(tiny, {})
    filled, present, _ = fill_window(values)
    serving = with_seasonal(f.inputs(filled, present, profiles, end), reals)
    serving = serving["decoder_cont"][..., cols].numpy()

    expected = _hand_computed(values)
    order = [names.index(s) for s in ds.decoded_index["server"]]
    np.testing.assert_allclose(serving, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(training, expected[order], rtol=1e-4, atol=1e-4)
    # The seasonal inputs are decoder-only: the encoder sees the real values themselves.
    assert not set(SEASONAL_COLUMNS) & set(tiny.hparams.time_varying_reals_encoder)
    assert set(SEASONAL_COLUMNS) <= set(tiny.hparams.time_varying_reals_decoder)


def test_scale_floor_follows_the_series_level():
    # Near zero: a VM sending 0.0001 MB/s is scaled by its own noise, not by a fixed 1 MB/s.
    assert floored_scale(2e-5, 1e-4, MIN_SCALE["net_out_mb_s"]) == pytest.approx(2e-5)
    # Constant at zero: the resolution floor, tiny next to any level that matters.
    assert floored_scale(0.0, 0.0, MIN_SCALE["net_out_mb_s"]) == MIN_SCALE["net_out_mb_s"]
    # Constant at a high level: 2% of the level.
    assert floored_scale(0.0, 80.0, MIN_SCALE["mem_used_pct"]) == pytest.approx(1.6)
    # Heavy-tailed: the spread itself wins.
    assert floored_scale(300.0, 5.0, MIN_SCALE["net_in_mb_s"]) == 300.0
    t = floored_scale(torch.tensor([0.0, 3.0]), torch.tensor([-50.0, 1.0]), torch.tensor(0.5))
    assert t.tolist() == pytest.approx([1.0, 3.0])


@pytest.mark.parametrize(
    "level, noise",
    [(1e-4, 2e-5), (0.0, 0.0), (200.0, 40.0)],
    ids=["near-zero", "constant-zero", "heavy-level"],
)
def test_forecast_stays_within_the_series_own_range(tiny, history, level, noise):
    rng = np.random.default_rng(3)
    end = _last_idx(history)
    names, profiles, values = windows_from_frame(history, end)
    values = values.copy()
    series = level + noise * rng.standard_normal(ENCODER_STEPS)
    if level == 200.0:  # heavy tail: rare bursts 20x the level
        series[rng.choice(ENCODER_STEPS, 5, replace=False)] *= 20
    values[:, :, NET] = np.maximum(series, 0)[None, :]
    f = Forecaster(tiny, {}).predict(values, profiles, end).values[:, NET]  # (S, 96, 3)
    lo, hi = values[:, :, NET].min(), values[:, :, NET].max()
    span = max(hi - lo, 1e-6)
    # Within the window's own range, give or take its own span: never 0.1 MB/s off a series
    # that sends 0.0001 MB/s.
    assert (f[..., 1] >= lo - 3 * span).all() and (f[..., 1] <= hi + 3 * span).all()
    if level < 1:
        assert np.abs(f[..., 1] - level).max() < 1e-3


def _last_idx(history: pd.DataFrame) -> int:
    from linborg.features import time_index

    return int(time_index(history["timestamp"]).max())


def test_incident_windows_are_those_whose_origin_lies_between_precursor_start_and_end():
    t0 = 1_000_000
    index = pd.DataFrame(
        {
            "server": ["a", "a", "a", "a~node_exporter", "b"],
            "time_idx_first_prediction": [t0, t0 + 200, t0 + 400, t0 + 200, t0 + 200],
        }
    )
    index["time_idx_last"] = index["time_idx_first_prediction"] + HORIZON_STEPS - 1

    def iso(step):
        return pd.Timestamp(step * 300, unit="s", tz="UTC").isoformat()

    incidents = [
        # precursor from t0+150, onset t0+250, end t0+300: origins t0+150 .. t0+300 count
        {
            "server": "a",
            "precursor_start": iso(t0 + 150),
            "onset": iso(t0 + 250),
            "end": iso(t0 + 300),
        },
        # no precursor: origins from the onset to the end
        {"server": "b", "precursor_start": None, "onset": iso(t0 + 180), "end": iso(t0 + 200)},
    ]
    # origins (first prediction - 1): a t0-1 (before), a t0+199 (ramp under way), a t0+399
    # (after the end), the copy of a at t0+199 (its original's incident), b t0+199 (in progress)
    mask = incident_window_mask(index, incidents)
    assert mask.tolist() == [False, True, False, True, True]
    # the edges: an origin at the precursor's first step and at the end count, one step
    # before or after does not
    edges = pd.DataFrame(
        {"server": ["a"] * 4, "time_idx_first_prediction": [t0 + 150, t0 + 151, t0 + 301, t0 + 302]}
    )
    assert incident_window_mask(edges, incidents).tolist() == [False, True, True, False]
    assert not incident_window_mask(index, None).any()


def test_window_sampler_draws_the_chosen_share_of_incident_windows():
    mask = np.zeros(10_000, bool)
    mask[:100] = True  # 1% of windows
    sampler = window_sampler(mask, 0.3, seed=1)
    drawn = np.fromiter(iter(sampler), int)
    assert len(drawn) == len(mask)
    assert mask[drawn].mean() == pytest.approx(0.3, abs=0.02)
    assert window_sampler(np.zeros(10, bool), 0.3, seed=1) is None


def test_validation_windows_are_fixed_spread_over_the_set_and_mixed_like_training():
    mask = np.zeros(20_000, bool)
    mask[5_000:5_200] = True  # 1% of windows, all in one place
    picked = validation_sample(mask, 0.3, 1_000, seed=3)
    assert picked == validation_sample(mask, 0.3, 1_000, seed=3)  # the same every epoch
    assert picked == sorted(set(picked)) and len(picked) == 1_000  # no window twice
    assert mask[picked].mean() == pytest.approx(0.2, abs=0.05)  # 200 of them exist at most
    assert mask[validation_sample(mask, 0.05, 1_000, seed=3)].mean() == pytest.approx(
        0.05, abs=0.02
    )
    # not the first windows in order: from the whole set
    assert min(picked) < 2_000 and max(picked) > 18_000
    uniform = validation_sample(mask, None, 1_000, seed=3)
    assert mask[uniform].mean() < 0.03
    assert validation_sample(mask, 0.3, 50_000, seed=3) == list(range(20_000))


def test_incident_metric_codes_mark_the_driven_metric_of_incidents_with_a_precursor():
    from linborg.trainer.train import incident_metric_codes

    t0 = 1_000_000
    frame = pd.DataFrame(
        {
            "server": ["a"] * 6 + ["a~node_exporter"] * 2 + ["b"] * 2,
            "time_idx": [t0 + k for k in range(6)] + [t0 + 2, t0 + 5] + [t0 + 2, t0 + 3],
        }
    )

    def iso(step):
        return pd.Timestamp(step * 300, unit="s", tz="UTC").isoformat()

    incidents = [
        {
            "server": "a",
            "metric": "disk_usage_pct",
            "precursor_start": iso(t0 + 1),
            "onset": iso(t0 + 3),
            "end": iso(t0 + 4),
        },
        {
            "server": "b",
            "metric": "not_a_metric",
            "precursor_start": iso(t0 + 2),
            "onset": iso(t0 + 2),
            "end": iso(t0 + 3),
        },
        # no precursor: nothing announces it, so it is not weighted
        {"server": "b", "metric": "uptime_days", "onset": iso(t0 + 2), "end": iso(t0 + 3)},
    ]
    code = METRIC_NAMES.index("disk_usage_pct") + 1
    got = incident_metric_codes(frame, incidents).tolist()
    assert got == [0, code, code, code, code, 0, code, 0, 0, 0]
    # With an aftermath: the steps after the end (the fix) get -code.
    got = incident_metric_codes(frame, incidents, aftermath_steps=1).tolist()
    assert got == [0, code, code, code, code, -code, code, -code, 0, 0]


def test_the_aftermath_lasts_one_horizon_and_never_hides_another_incident():
    from linborg.model import AFTERMATH_CODE_BASE
    from linborg.trainer.train import AFTERMATH_STEPS, incident_metric_codes

    t0 = 2_000_000
    n = 2 * AFTERMATH_STEPS + 40
    frame = pd.DataFrame({"server": ["a"] * n, "time_idx": [t0 + k for k in range(n)]})

    def iso(step):
        return pd.Timestamp(step * 300, unit="s", tz="UTC").isoformat()

    def incident(metric, first, onset, end):
        return {
            "server": "a",
            "metric": metric,
            "precursor_start": iso(t0 + first),
            "onset": iso(t0 + onset),
            "end": iso(t0 + end),
        }

    mem, disk = (METRIC_NAMES.index(m) + 1 for m in ("mem_used_pct", "disk_usage_pct"))
    incidents = [incident("mem_used_pct", 2, 4, 6), incident("disk_usage_pct", 50, 51, 53)]
    assert (incident_metric_codes(frame, incidents)[7:50] == 0).all()  # off by default
    got = incident_metric_codes(frame, incidents, AFTERMATH_STEPS)
    assert got[:7].tolist() == [0, 0, mem, mem, mem, mem, mem]
    # mem's aftermath: -(code + AFTERMATH_CODE_BASE * steps since its end)
    assert got[7:50].tolist() == [-(mem + AFTERMATH_CODE_BASE * k) for k in range(43)]
    assert got[50:54].tolist() == [disk] * 4  # another incident's steps keep their code
    # overlapping: the earlier one holds
    assert got[54 : 7 + AFTERMATH_STEPS].tolist() == [
        -(mem + AFTERMATH_CODE_BASE * (i - 7)) for i in range(54, 7 + AFTERMATH_STEPS)
    ]
    assert got[7 + AFTERMATH_STEPS : 54 + AFTERMATH_STEPS].tolist() == [
        -(disk + AFTERMATH_CODE_BASE * (i - 54))
        for i in range(7 + AFTERMATH_STEPS, 54 + AFTERMATH_STEPS)
    ]
    assert (got[54 + AFTERMATH_STEPS :] == 0).all()


def test_the_loss_counts_the_incident_metric_more_at_its_marked_steps():
    from linborg.model import INCIDENT_METRIC_WEIGHT, MaskedQuantileLoss

    torch.manual_seed(0)
    pred = torch.randn(4, 6, 3)
    target = torch.randn(4, 6)
    marked = torch.zeros(4, 6)
    marked[1, 2:5] = 3.0  # metric code 3 at three steps of one window
    other = torch.where(marked > 0, 5.0, 0.0)  # another metric's code

    def total(loss, weight):
        loss.update(pred, (target, weight))
        return float(loss.losses)

    plain = total(MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9], metric_code=3), None)
    boosted = total(MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9], metric_code=3), marked)
    unaffected = total(MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9], metric_code=3), other)
    skipped = total(MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9], metric_code=3), -marked)
    each = MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9]).loss(pred, target).sum(-1) / 3
    extra = (INCIDENT_METRIC_WEIGHT - 1) * float(each[1, 2:5].sum())
    assert unaffected == pytest.approx(plain)
    assert boosted == pytest.approx(plain + extra, rel=1e-5)
    # The aftermath (minus the code) is left out of the loss.
    assert skipped == pytest.approx(plain - float(each[1, 2:5].sum()), rel=1e-5)


def test_the_aftermath_counts_only_where_the_context_already_shows_the_fix():
    from linborg.model import AFTERMATH_CODE_BASE, MaskedQuantileLoss

    torch.manual_seed(1)
    pred = torch.randn(2, 6, 3)
    target = torch.randn(2, 6)
    # Window 0: every decoder step lies 2 steps after the end of an incident of metric 3, so
    # positions 0 and 1 (origin 3 and 2 steps after the end: the fix is in the context) count,
    # positions 2-5 (origin at or before the last incident step) do not. Window 1: unmarked.
    weight = torch.zeros(2, 6)
    weight[0, :] = -(3 + AFTERMATH_CODE_BASE * 2)

    def total(code, w):
        loss = MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9], metric_code=code)
        loss.update(pred, (target, w))
        return float(loss.losses)

    each = MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9]).loss(pred, target).sum(-1) / 3
    assert total(3, weight) == pytest.approx(float(each.sum() - each[0, 2:].sum()), rel=1e-5)
    # another metric's aftermath does not touch this one
    assert total(4, weight) == pytest.approx(float(each.sum()), rel=1e-5)


def test_window_log_losses_are_each_windows_scaled_loss_on_a_log_scale():
    from pytorch_forecasting.metrics import MultiLoss

    from linborg.model import SENTINEL, MaskedQuantileLoss, floored_scale, window_log_losses

    q = [0.1, 0.5, 0.9]
    # Two windows of one metric: a day at 10 +- 1 then a forecast 1 off; a flat day at 0 then
    # a burst to 400 that the forecast (0) misses.
    enc = torch.stack([10 + torch.tensor([-1.0, 1.0]).repeat(6), torch.zeros(12)])
    target = torch.tensor([[11.0, 11.0, SENTINEL], [400.0, 400.0, 400.0]])
    pred = torch.stack([torch.full((3, 3), 10.0), torch.zeros(3, 3)])
    loss = MaskedQuantileLoss(quantiles=q, min_scale=1e-6, center_steps=4)

    def by_hand(e, t, p):
        scale = floored_scale(e.std(), e[-4:].mean(), 1e-6)
        # pytorch-forecasting's quantile loss is twice the pinball loss.
        pinball = [2 * max(qq * (t - p), (qq - 1) * (t - p)) for qq in q]
        return float(np.mean(pinball) / scale)

    # The first window's third step is absent: only the two present steps count.
    expected = [by_hand(enc[0], 11.0, 10.0), by_hand(enc[1], 400.0, 0.0)]
    got = loss.window_losses(pred, target, enc)
    assert got.numpy() == pytest.approx(expected, rel=1e-5)
    assert expected[1] > 1e6 * expected[0]  # the burst after a flat day decides a plain mean
    both = window_log_losses(
        MultiLoss([loss, loss]), [pred, pred], ([target, target], None), [enc, enc]
    )
    assert both.shape == (2, 2)
    assert both[:, 0].numpy() == pytest.approx(np.log1p(expected), rel=1e-5)
    # A window with no present target is NaN, not 0.
    none = loss.window_losses(pred, torch.full_like(target, SENTINEL), enc)
    assert torch.isnan(none).all()
    # Trained with --log-loss, the loss is the mean of the same per-window logs, so the burst
    # counts about 20 times the ordinary window instead of 400 million times.
    loss.log_windows = True
    assert float(loss(pred, target, encoder_target=enc)) == pytest.approx(
        np.log1p(expected).mean(), rel=1e-5
    )
    loss.log_windows = False
    assert float(loss(pred, target, encoder_target=enc)) > 1e7


def test_horizon_decay_weights_each_step_by_its_distance_and_keeps_the_mean_loss_scale():
    from linborg.model import MaskedQuantileLoss, horizon_weights

    w = horizon_weights(96, 1.0)
    assert float(w.mean()) == pytest.approx(1.0)
    assert float(w[0] / w[1]) == pytest.approx(2.0)  # step 1 counts twice step 2
    # With decay 1 each doubling of the horizon weighs about alike: steps 7-12 (30 min to
    # 1 h) and 49-96 (4 h to 8 h) within 10% of each other; with 0 the second is 8 times more.
    assert float(w[6:12].sum() / w[48:96].sum()) == pytest.approx(1.0, abs=0.1)
    flat = horizon_weights(96, 0.0)
    assert torch.equal(flat, torch.ones(96))
    assert float(flat[48:96].sum() / flat[6:12].sum()) == 8.0

    torch.manual_seed(2)
    pred = torch.randn(3, 4, 3)
    target = torch.randn(3, 4)
    each = MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9]).loss(pred, target).sum(-1) / 3

    def total(decay, log_windows=False):
        loss = MaskedQuantileLoss(quantiles=[0.1, 0.5, 0.9])
        loss.horizon_decay = decay
        loss.log_windows = log_windows
        loss.update(pred, target)
        return float(loss.losses)

    by_hand = horizon_weights(4, 0.5)
    assert total(0.5) == pytest.approx(float((each * by_hand).sum()), rel=1e-5)
    assert total(0.5) != pytest.approx(total(0.0), rel=1e-3)
    # On the log scale the weights act inside each window's mean.
    logged = np.log1p((each * by_hand).sum(1).numpy() / 4).sum()
    assert total(0.5, log_windows=True) == pytest.approx(logged, rel=1e-5)


def test_naive_ratio_compares_the_p50_with_the_metrics_best_naive_forecast():
    from linborg.model import SENTINEL, naive_ratio, naive_window_errors

    # One metric, two windows of 4 encoder steps and 2 future steps.
    enc = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]])
    target = torch.tensor([[2.0, SENTINEL], [7.0, 9.0]])
    p50 = torch.tensor([[3.0, 0.0], [5.0, 5.0]])
    pred = torch.stack([p50 - 1, p50, p50 + 1], -1)
    sums, counts = naive_window_errors([pred], ([target], None), [enc])
    # p50, last value, the step 4 encoder steps before (here the encoder's first steps), mean.
    assert sums[0, 0].tolist() == [1.0, 2.0, 1.0, 0.5]  # only the first step is present
    assert sums[1, 0].tolist() == [6.0, 6.0, 6.0, 6.0]
    assert counts.tolist() == [[1.0], [2.0]]
    # Windows of one series pool; the best naive forecast is the metric's over all series.
    series = np.array([0, 1])
    s, c = sums.numpy().astype(float), counts.numpy().astype(float)
    # Pooled MAE: last value 8/3, seasonal 7/3, mean 6.5/3 -> the 24-hour mean is best.
    expected = np.sqrt((1.0 / 0.5) * (3.0 / 3.0))
    assert naive_ratio(series, s, c, np.zeros(1)) == pytest.approx(expected)
    # Two windows of the same series are one series: (1 + 6) / 3 over (0.5 + 6) / 3.
    assert naive_ratio(np.array([4, 4]), s, c, np.zeros(1)) == pytest.approx(7.0 / 6.5)
