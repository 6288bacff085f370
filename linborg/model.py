"""The Temporal Fusion Transformer as this project uses it: dataset, loss, presets, inference.

Training goes through pytorch-forecasting's TimeSeriesDataSet; inference builds the same input
tensors directly from arrays (``Forecaster.predict``), which is several times faster and is
checked against the dataset path bit for bit in the tests.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
from pytorch_forecasting.data.encoders import EncoderNormalizer, MultiNormalizer, NaNLabelEncoder
from pytorch_forecasting.metrics import MultiLoss, QuantileLoss
from pytorch_forecasting.utils import detach, unpack_sequence
from torch import nn
from torch.nn.utils import rnn

from linborg import calibration
from linborg.contract import METRIC_NAMES, METRICS_BY_NAME, PROFILE, PROFILE_NAMES, SERVER
from linborg.features import (
    ENCODER_STEPS,
    HORIZON_STEPS,
    MODEL_TIME_FEATURES,
    PRESENT_COLUMNS,
    SEASONAL_COLUMNS,
    SEASONAL_POSITIONS,
    SENTINEL,
    TIME_IDX,
    UNKNOWN_PROFILE,
    fill_window,
    known_features,
    network_profiles,
)

QUANTILES = [0.1, 0.5, 0.9]
#: Each window is scaled by its own spread, floored so that a flat window cannot collapse the
#: forecast band: the floor is RELATIVE_FLOOR of the window's recent level, and never below a
#: resolution floor per metric (MIN_SCALE, in the metric's unit) that is tiny next to any level
#: that matters, so a VM sending 0.0001 MB/s is scaled by its own noise, not by 1 MB/s.
RELATIVE_FLOOR = 0.02
MIN_SCALE = {
    **{m: 0.01 for m in METRIC_NAMES},  # percent: a hundredth of a point
    "net_in_mb_s": 1e-6,
    "net_out_mb_s": 1e-6,
    "back_close_wait": 0.5,  # connection counts are integers
    "front_close_wait": 0.5,
    "load_average": 0.01,
    "uptime_days": 0.01,
}


def floored_scale(std, center, min_scale, relative: float = RELATIVE_FLOOR):
    """Return the normalisation scale: max(std, relative * |centre|, min_scale).

    Works on numpy arrays and torch tensors alike; training (normaliser and loss) and serving
    (``Forecaster.inputs``) all call it.
    """
    if isinstance(std, torch.Tensor):
        return torch.maximum(std, relative * center.abs()).clamp_min(min_scale)
    return np.maximum(np.maximum(std, relative * np.abs(center)), min_scale)


#: Each window is centred on the mean of its last CENTER_STEPS steps (the last hour) and scaled
#: by the standard deviation of the whole 24 hours. Centring on the recent level makes "stay
#: where it is now" the network's zero, so a metric that has climbed to 99% is forecast from
#: 99%, not pulled back to the day's mean. Bundles record it; older ones used 288 (the whole
#: window) and still load.
CENTER_STEPS = 12

#: Hyperparameters of each preset. ``max_minutes`` bounds wall-clock training time.
PRESETS = {
    "tiny": dict(
        hidden_size=8,
        attention_head_size=1,
        hidden_continuous_size=4,
        dropout=0.0,
        learning_rate=0.01,
        batch_size=32,
        max_epochs=1,
        batches_per_epoch=6,
        val_batches=2,
        patience=1,
        max_minutes=2.0,
    ),
    "default": dict(
        hidden_size=24,
        attention_head_size=2,
        hidden_continuous_size=12,
        dropout=0.1,
        learning_rate=0.004,
        batch_size=64,
        max_epochs=60,
        batches_per_epoch=100,
        val_batches=30,
        patience=6,
        max_minutes=65.0,
    ),
}
#: Fine-tuning (``linborg train --init BUNDLE``) keeps the bundle's network; these are only
#: the optimiser's settings and the budget (10 minutes on 2 cores). The learning rate was
#: chosen among 0.0003, 0.001, 0.003 and 0.01 on a validation span of the shared real set
#: for the bundle shipped before 2026-12-03, and kept for today's among 0.003, 0.01 and 0.02
#: (docs/training.md, "Fine-tuning a bundle on your fleet").
PRESETS["finetune"] = dict(
    PRESETS["default"],
    learning_rate=0.01,
    max_epochs=30,
    batches_per_epoch=50,
    val_batches=20,
    patience=4,
    max_minutes=10.0,
)
#: The learning rate of a fine-tune of a plain-host network (``BUNDLE/plain``, continued by
#: ``linborg train --init BUNDLE`` on plain hosts) unless ``--learning-rate`` is given: chosen
#: over the preset's 0.01 on a validation span of 36 real VMs the network never saw, where 0.01
#: fell behind the network it started from (docs/training.md, "The plain-host network").
PLAIN_FINETUNE_LEARNING_RATE = 0.001
MODEL_HPARAMS = (
    "hidden_size",
    "attention_head_size",
    "hidden_continuous_size",
    "dropout",
    "learning_rate",
)


class FlooredEncoderNormalizer(EncoderNormalizer):
    """Standardise each sample by its own encoder window, with a floor under the scale."""

    def __init__(
        self,
        method="standard",
        center=True,
        max_length=None,
        transformation=None,
        method_kwargs=None,
        min_scale: float = 1.0,
    ):
        super().__init__(
            method=method,
            center=center,
            max_length=max_length,
            transformation=transformation,
            method_kwargs=method_kwargs,
        )
        self.min_scale = min_scale

    def _set_parameters(self, y_center, y_scale):
        super()._set_parameters(y_center=y_center, y_scale=y_scale)
        self.scale_ = floored_scale(self.scale_, self.center_, self.min_scale)


#: Training only: the loss of the metric an incident drives, at the steps of its precursor and
#: critical phase, counts this many times. A window holds 14 metrics and an incident drives
#: one, so without it a ramp is a fourteenth of its window's loss and is cheaply pulled back.
INCIDENT_METRIC_WEIGHT = 5.0
#: The training frame's weight column: at each step, 1 + the index in METRIC_NAMES of the
#: metric an incident of that server drives (its precursor start to its end), a negative
#: aftermath code after its end (below), 0 elsewhere. It selects loss weights from the labels;
#: it is never a model input.
INCIDENT_METRIC_COLUMN = "incident_metric_code"
#: An aftermath step's code is -(metric code + AFTERMATH_CODE_BASE * k), k its steps since the
#: incident's end (``trainer.train.incident_metric_codes``); metric codes are below it.
AFTERMATH_CODE_BASE = 16


class MaskedQuantileLoss(QuantileLoss):
    """Quantile loss that skips absent targets (SENTINEL) and is scaled by each sample's history.

    pytorch-forecasting computes the loss in the metrics' own units; dividing by the encoder
    window's standard deviation puts every metric on the same footing, so close_wait counts in
    the hundreds do not drown out percentages. ``metric_code`` is 1 + this metric's index: at
    steps whose weight (the INCIDENT_METRIC_COLUMN) equals it, the loss counts
    ``incident_weight`` times. An aftermath step ``-(metric_code + AFTERMATH_CODE_BASE * k)``,
    k steps after the incident's end, does not count at decoder positions j >= k (0-based):
    there the window's origin comes before the fix, whose time the context cannot tell. Where
    the context already shows the fix (j < k) it counts as usual.
    """

    def __init__(
        self,
        quantiles=None,
        sentinel: float = SENTINEL,
        min_scale: float = 1.0,
        center_steps: int = 12,
        metric_code: int | None = None,
        incident_weight: float = INCIDENT_METRIC_WEIGHT,
        skip_aftermath: bool = True,
        **kwargs,
    ):
        super().__init__(quantiles=quantiles, **kwargs)
        #: Whether aftermath codes (present only when training skips them) are skipped here;
        #: the forecast head of a network with a no-fix head keeps them as ordinary steps.
        self.skip_aftermath = skip_aftermath
        self.sentinel = sentinel
        self.min_scale = min_scale
        self.center_steps = center_steps
        self.metric_code = metric_code
        self.incident_weight = incident_weight
        #: Train on log(1 + each window's scaled loss) instead of the scaled loss itself
        #: (``linborg train --log-loss``), set by the trainer like ``incident_weight``.
        self.log_windows = False
        #: Each decoder step j (1-based) counts j ** -horizon_decay, the weights' mean over a
        #: window's steps 1 (``linborg train --horizon-decay``): 0 counts every step alike; 1
        #: counts each doubling of the horizon (30 min to 1 h, 4 h to 8 h) about alike.
        self.horizon_decay = 0.0

    def update(self, y_pred, target, encoder_target=None, encoder_lengths=None):
        if isinstance(target, list | tuple) and not isinstance(target, rnn.PackedSequence):
            target, weight = target
        else:
            weight = None
        if isinstance(target, rnn.PackedSequence):
            target, _ = unpack_sequence(target)
        if isinstance(encoder_target, rnn.PackedSequence):
            encoder_target, _ = unpack_sequence(encoder_target)
        mask = target != self.sentinel
        losses = self.loss(y_pred, target) / len(self.quantiles)  # [B, T, Q]
        if encoder_target is not None:
            losses = losses / self.window_scale(encoder_target)[:, None, None]
        w = mask.to(losses.dtype)
        if weight is not None and self.metric_code is not None:
            # The incident's steps count more; its aftermath not where the origin precedes the fix.
            boost = torch.where(weight == self.metric_code, self.incident_weight, 1.0)
            code = (-weight).clamp_min(0)
            since_end = torch.div(code, AFTERMATH_CODE_BASE, rounding_mode="floor")
            position = torch.arange(weight.size(1), device=weight.device)[None, :]
            unknown_fix = (
                (weight < 0)
                & self.skip_aftermath
                & (code - AFTERMATH_CODE_BASE * since_end == self.metric_code)
                & (since_end <= position)
            )
            w = w * torch.where(unknown_fix, 0.0, boost)
        decay = getattr(self, "horizon_decay", 0.0)
        if decay:
            w = w * horizon_weights(w.size(1), decay, w.device, w.dtype)[None, :]
        if getattr(self, "log_windows", False):
            # Each window's weighted mean over its present steps, on a log scale: a burst after
            # a flat day no longer decides the batch's gradient.
            present = mask.sum(dim=1)
            per_window = (losses.sum(dim=-1) * w).sum(dim=1) / present.clamp_min(1)
            self.losses = self.losses + torch.log1p(per_window)[present > 0].sum()
            self.lengths = self.lengths + (present > 0).sum()
            return
        self.losses = self.losses + (losses * w.unsqueeze(-1)).sum()
        self.lengths = self.lengths + mask.sum()

    def compute(self):
        return self.losses / self.lengths.clamp_min(1)

    def window_scale(self, encoder_target: torch.Tensor) -> torch.Tensor:
        """Return each window's loss scale (batch,): its encoder's floored spread."""
        enc = encoder_target
        std = enc.std(dim=1) if enc.size(1) > 1 else torch.ones(enc.size(0), device=enc.device)
        center = enc[:, -self.center_steps :].mean(dim=1)
        return floored_scale(std, center, self.min_scale)

    def window_losses(self, y_pred, target, encoder_target) -> torch.Tensor:
        """Return each window's scaled quantile loss: (batch,), NaN where no target is present.

        The loss of ``update`` per window, averaged over its present steps and the quantiles,
        without the incident weights.
        """
        if isinstance(target, rnn.PackedSequence):
            target, _ = unpack_sequence(target)
        if isinstance(encoder_target, rnn.PackedSequence):
            encoder_target, _ = unpack_sequence(encoder_target)
        mask = (target != self.sentinel).to(y_pred.dtype)
        losses = self.loss(y_pred, target).mean(dim=-1) / self.window_scale(encoder_target)[:, None]
        present = mask.sum(dim=1)
        mean = (losses * mask).sum(dim=1) / present.clamp_min(1)
        return torch.where(present > 0, mean, torch.full_like(mean, float("nan")))


def horizon_weights(steps: int, decay: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """Return each decoder step's loss weight (steps,): j ** -decay for step j, mean 1."""
    j = torch.arange(1, steps + 1, device=device, dtype=dtype)
    weights = j.pow(-decay)
    return weights / weights.mean()


def window_log_losses(loss: MultiLoss, prediction, y, encoder_target) -> torch.Tensor:
    """Return log(1 + each window's scaled quantile loss) per metric: (batch, 14), NaN if absent.

    The validation loss is a mean of scaled losses, and a burst after a flat window (a VM at
    0 MB/s for a day, then 400 MB/s) is millions of times the window's own scale, so a few
    such windows decide it. On a log scale each window counts about as much as any other, as
    the per-series geometric means of ``linborg evaluate`` count each series.
    """
    target = y[0] if isinstance(y, list | tuple) else y
    parts = [
        metric.window_losses(p, t, e)
        for metric, p, t, e in zip(loss.metrics, prediction, target, encoder_target, strict=True)
    ]
    return torch.log1p(torch.stack(parts, dim=1))


def make_loss() -> MultiLoss:
    """Return the training loss: one masked quantile loss per metric."""
    return MultiLoss(
        [
            MaskedQuantileLoss(
                quantiles=QUANTILES,
                min_scale=MIN_SCALE[m],
                center_steps=CENTER_STEPS,
                metric_code=i + 1,
            )
            for i, m in enumerate(METRIC_NAMES)
        ]
    )


def make_normalizer(center_steps: int = CENTER_STEPS) -> MultiNormalizer:
    """Return the target normaliser: per-window standardisation of each metric.

    The centre is the mean of the last ``center_steps`` encoder steps, the scale the standard
    deviation of the whole encoder window (floored by ``floored_scale``).
    """
    length = (center_steps, ENCODER_STEPS) if center_steps < ENCODER_STEPS else None
    return MultiNormalizer(
        [FlooredEncoderNormalizer(min_scale=MIN_SCALE[m], max_length=length) for m in METRIC_NAMES]
    )


def center_steps_of(model: TemporalFusionTransformer) -> int:
    """Return the steps the model's target normaliser centres on."""
    length = model.output_transformer.normalizers[0].max_length
    return ENCODER_STEPS if length is None else int(length[0])


def profile_encoder() -> NaNLabelEncoder:
    """Return the profile encoder: every contract profile, unknown ones mapped to 'nan'."""
    return NaNLabelEncoder(add_nan=True, warn=False).fit(pd.Series(PROFILE_NAMES))


def profile_codes() -> dict[str, int]:
    """Return the model's code of each profile (as the dataset encodes it)."""
    return {str(k): int(v) for k, v in profile_encoder().classes_.items()}


def make_dataset(model_frame: pd.DataFrame, **kwargs) -> TimeSeriesDataSet:
    """Return the TimeSeriesDataSet of a model frame (``linborg.features.build_model_frame``)."""
    return TimeSeriesDataSet(
        model_frame,
        time_idx=TIME_IDX,
        target=list(METRIC_NAMES),
        group_ids=[SERVER],
        max_encoder_length=ENCODER_STEPS,
        max_prediction_length=HORIZON_STEPS,
        static_categoricals=[PROFILE],
        static_reals=list(PRESENT_COLUMNS),
        time_varying_known_reals=[*MODEL_TIME_FEATURES, *SEASONAL_COLUMNS],
        time_varying_unknown_reals=list(METRIC_NAMES),
        target_normalizer=make_normalizer(),
        scalers={c: None for c in (*PRESENT_COLUMNS, *MODEL_TIME_FEATURES, *SEASONAL_COLUMNS)},
        categorical_encoders={
            SERVER: NaNLabelEncoder(add_nan=True, warn=False),
            PROFILE: profile_encoder(),
        },
        add_relative_time_idx=False,
        add_target_scales=False,
        add_encoder_length=False,
        **kwargs,
    )


def reals_order() -> list[str]:
    """Return the order of the model's real-valued input columns."""
    return [*PRESENT_COLUMNS, *MODEL_TIME_FEATURES, *SEASONAL_COLUMNS, *METRIC_NAMES]


def incident_head_loss(logits: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Return the mean binary cross-entropy of (batch, steps, 14) log-odds against the marks.

    ``weight``: (batch, steps) incident codes (1 + the driven metric's index where an incident
    is under way, 0 or an aftermath code elsewhere), as the training batches carry them.
    """
    codes = torch.arange(1, len(METRIC_NAMES) + 1, device=weight.device, dtype=weight.dtype)
    labels = (weight[..., None] == codes).to(logits.dtype)
    return nn.functional.binary_cross_entropy_with_logits(logits, labels[:, : logits.size(1)])


#: The naive forecasts ``naive_window_errors`` scores the p50 against, in this order.
NAIVE_FORECASTS = ("last_value", "seasonal_naive", "mean_24h")


def naive_window_errors(prediction, y, encoder_target) -> tuple[torch.Tensor, torch.Tensor]:
    """Return each window's summed absolute errors and present steps per metric.

    (batch, 14, 4) sums over the window's present future steps of |p50 - actual| and of each
    NAIVE_FORECASTS' error (the last encoder value; the encoder value 24 hours before the
    step, ``ENCODER_STEPS`` being one day; the encoder's mean), and (batch, 14) the counts.
    """
    target = y[0] if isinstance(y, list | tuple) else y
    sums, counts = [], []
    for p, t, e in zip(prediction, target, encoder_target, strict=True):
        if isinstance(t, rnn.PackedSequence):
            t, _ = unpack_sequence(t)
        if isinstance(e, rnn.PackedSequence):
            e, _ = unpack_sequence(e)
        steps = t.size(1)
        mask = (t != SENTINEL).to(p.dtype)
        forecasts = [
            p[..., p.size(-1) // 2],
            e[:, -1:].expand(-1, steps),
            e[:, :steps],
            e.mean(dim=1, keepdim=True).expand(-1, steps),
        ]
        sums.append(torch.stack([((f - t).abs() * mask).sum(1) for f in forecasts], -1))
        counts.append(mask.sum(1))
    return torch.stack(sums, 1), torch.stack(counts, 1)


def naive_ratio(series: np.ndarray, sums: np.ndarray, counts: np.ndarray, eps) -> float:
    """Return the geometric mean over series and metrics of p50 MAE over best naive MAE.

    ``series``: (windows,) the series each window belongs to; ``sums``/``counts`` from
    ``naive_window_errors``; ``eps``: (14,) added to both sides of each ratio. The best naive
    forecast of a metric is the one of NAIVE_FORECASTS with the lowest MAE over all its
    series, as ``linborg evaluate`` picks it per metric and horizon (here all 8 hours pooled).
    """
    codes, index = np.unique(series, return_inverse=True)
    total = np.zeros((len(codes), *sums.shape[1:]))
    steps = np.zeros((len(codes), counts.shape[1]))
    np.add.at(total, index, sums)
    np.add.at(steps, index, counts)
    present = steps > 0
    mae = total / np.maximum(steps, 1)[..., None]
    pooled = (total * present[..., None]).sum(0) / np.maximum(steps.sum(0), 1)[:, None]
    best = 1 + pooled[:, 1:].argmin(1)  # per metric
    naive = np.take_along_axis(mae, best[None, :, None], axis=2)[..., 0]
    ratio = (mae[..., 0] + eps) / (naive + eps)
    return float(np.exp(np.log(ratio[present]).mean())) if present.any() else float("nan")


class SeasonalTFT(TemporalFusionTransformer):
    """The TFT with the seasonal input filled in: each future step sees the value 24 h before.

    The seasonal columns (``linborg.features.SEASONAL_COLUMNS``) are decoder-only known inputs.
    Their values are copied, for every future step, from the normalised encoder window at
    ``SEASONAL_POSITIONS``, inside ``forward``, so the training batches and the exporter's
    input tensors cannot disagree about them: both pass through this one function.
    """

    def save_hyperparameters(self, *args, ignore=None, frame=None, logger: bool = True) -> None:
        """Save the hyperparameters without Lightning's warning about the module-valued ones.

        pytorch-forecasting's TFT saves every ``__init__`` argument, ``loss`` and
        ``logging_metrics`` (nn.Modules) included, and bundles are written from ``hparams``;
        ignoring them would change both, so only Lightning's warning about them (printed on
        every build and load) is dropped. ``frame`` stays the caller's, as Lightning needs it
        to find the ``__init__`` arguments.
        """
        if frame is None:
            frame = inspect.currentframe().f_back
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"Attribute '\w+' is an instance of `nn.Module` and is already"
            )
            super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)

    def __init__(
        self,
        *args,
        level_inputs: bool = False,
        trend_inputs: bool = False,
        threshold_inputs: dict | None = None,
        incident_head: float = 0.0,
        nofix_head: float = 0.0,
        naive_mix: bool = False,
        unknown_profile: bool = False,
        **kwargs,
    ):
        """``level_inputs``: the network also sees each window's level and spread in the metrics'
        units (``level_features``); ``trend_inputs``: each future step also sees where the
        recent least-squares lines reach by then (``trend_features``); ``threshold_inputs``:
        a thresholds table ({profile: {metric: {warning, critical}}}) from which each past step
        also sees each metric's distance to its warning level (``threshold_features``). Bundles
        record all three in their hyperparameters (the table itself for the third).
        ``incident_head``: the weight of a second training objective (``add_incident_head``),
        0 for none. ``nofix_head``: the incident weight of a second set of quantile outputs
        trained without the incidents' aftermath (``add_nofix_head``), 0 for none.
        ``naive_mix``: each forecast adds a mix of the naive forecasts whose weights the
        network reads from its state (``add_naive_mix``). ``unknown_profile``: the network
        reads a plain host's profile as ``unknown`` (``linborg.features.network_profiles``),
        in training and in serving."""
        super().__init__(*args, **kwargs)
        if unknown_profile:
            self.add_unknown_profile()
        self._levels = None
        self._trends = None
        self._distances = None
        if level_inputs:
            self.add_level_inputs()
        if trend_inputs:
            self.add_trend_inputs()
        if threshold_inputs:
            self.add_threshold_inputs(threshold_inputs)
        self._state = None
        #: Serve the no-fix head's quantiles instead of the forecasts (an experiment's switch).
        self.read_nofix = False
        if incident_head:
            self.add_incident_head(incident_head)
        if nofix_head:
            self.add_nofix_head(nofix_head)
        self._naive = None
        if naive_mix:
            self.add_naive_mix()
        self._window_log_losses: list[torch.Tensor] = []
        self._naive_errors: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def add_unknown_profile(self) -> None:
        """Read a plain host's profile as ``unknown`` and let that profile's embedding train.

        ``unknown`` gets the profile encoder's spare code (``nan``), whose embedding row
        pytorch-forecasting keeps at zero as padding: here it becomes an ordinary row, learnt
        from the plain hosts in the training data (at zero until then).
        """
        self.hparams["unknown_profile"] = True
        self.input_embeddings.embeddings[PROFILE].padding_idx = None
        paddings = self.hparams.get("embedding_paddings") or []
        self.hparams["embedding_paddings"] = [p for p in paddings if p != PROFILE]

    def freeze_known_profiles(self) -> None:
        """Train only the ``unknown`` profile's embedding row; every other weight stays.

        Servers of the contract's profiles are then forecast exactly as before.
        """
        for p in self.parameters():
            p.requires_grad_(False)
        weight = self.input_embeddings.embeddings[PROFILE].weight
        weight.requires_grad_(True)
        keep = torch.zeros_like(weight)
        keep[profile_codes()["nan"]] = 1.0
        weight.register_hook(lambda grad: grad * keep)

    def add_naive_mix(self) -> None:
        """Add to every forecast a mix of the naive forecasts, weighted by the network's state.

        On real VMs last value is hard to beat and the network, whose zero is the last hour's
        mean, lost to it on CPU at every horizon; on a seasonal series the value 24 hours
        before is the one to follow. Here a linear map reads, at each future step, the decoder
        state (the input of the output layer) and gives one weight per metric for each of
        NAIVE_FORECASTS (``naive_forecasts``); their weighted sum, in the window's normalised
        units, is added to that metric's three quantiles. The weights are per window and step,
        so the network chooses last value on a bursty series and yesterday on a seasonal one.
        The map is zero at first: a trained network given it forecasts exactly as before
        until it trains on.
        """
        if hasattr(self, "naive_weights"):
            return
        self.naive_weights = nn.Linear(
            self.hparams.hidden_size, len(METRIC_NAMES) * len(NAIVE_FORECASTS)
        )
        nn.init.zeros_(self.naive_weights.weight)
        nn.init.zeros_(self.naive_weights.bias)
        self.hparams["naive_mix"] = True
        self._hook_state()
        for i, layer in enumerate(self.output_layer):
            layer.register_forward_hook(self._naive_hook(i))

    def _naive_hook(self, index: int):
        def add(module, args, output):
            if index == 0:  # the state of this forward pass, kept by the pre-hook
                weights = self.naive_weights(self._state)
                weights = weights.view(*weights.shape[:2], len(METRIC_NAMES), -1)
                self._naive_base = (weights * self._naive[:, : weights.size(1)]).sum(-1)
            return output + self._naive_base[..., index, None]

        return add

    def add_level_inputs(self) -> None:
        """Give the network each window's level and spread (``level_features``).

        Normalising each window by itself hides where the metric stands: a memory ramp from 50%
        to 60% and one from 85% to 95% look alike. The features enter through a linear map added
        to the static embedding (the output of the static variable selection), which is zero
        at first: a trained network given them forecasts exactly as before until it trains on.
        """
        if hasattr(self, "level_projection"):
            return
        self.level_projection = nn.Linear(len(LEVEL_FEATURES), self.hparams.hidden_size)
        nn.init.zeros_(self.level_projection.weight)
        nn.init.zeros_(self.level_projection.bias)
        self.hparams["level_inputs"] = True
        self.static_variable_selection.register_forward_hook(self._add_levels)

    def _add_levels(self, module, args, output):
        embedding, weights = output
        return embedding + self.level_projection(self._levels), weights

    def add_trend_inputs(self) -> None:
        """Give each future step where the window's recent straight lines reach by then.

        ``predict_linear`` knows this and the network did not have it in a form it could use:
        a leak climbing for two hours was forecast to fall back (benchmarks/ramp_follow.py).
        The features (``trend_features``) enter through a linear map added to each decoder
        step's embedding (the output of the decoder variable selection), zero at first, so a
        trained network given them forecasts exactly as before until it trains on.
        """
        if hasattr(self, "trend_projection"):
            return
        self.trend_projection = nn.Linear(len(TREND_FEATURES), self.hparams.hidden_size)
        nn.init.zeros_(self.trend_projection.weight)
        nn.init.zeros_(self.trend_projection.bias)
        self.hparams["trend_inputs"] = True
        self.decoder_variable_selection.register_forward_hook(self._add_trends)

    def _add_trends(self, module, args, output):
        embedding, weights = output
        steps = embedding.size(1)
        return embedding + self.trend_projection(self._trends[:, :steps]), weights

    def add_threshold_inputs(self, table: dict) -> None:
        """Give each past step each metric's distance to its warning level (``threshold_features``).

        A window normalised by itself no longer says how far its metric stands from trouble: a
        memory leak from 55% to 85% and a healthy day's swing look alike
        (benchmarks/context_separability.py, ``--window-normalised``). ``table`` is the
        thresholds the network is trained with ({profile: {metric: {warning, critical}}}, the
        packaged ones); the bundle keeps it, so a user's threshold overrides change alerts, not
        the network's inputs. The distances enter through a linear map added to each encoder
        step's embedding (the output of the encoder variable selection), zero at first, so a
        trained network given them forecasts exactly as before until it trains on.
        """
        if hasattr(self, "threshold_projection"):
            return
        table = {p: {m: dict(v) for m, v in ms.items()} for p, ms in table.items()}
        self.register_buffer(
            "threshold_levels",
            threshold_levels(table, dict(self.hparams.embedding_labels["profile"])),
            persistent=False,
        )
        self.threshold_projection = nn.Linear(len(METRIC_NAMES), self.hparams.hidden_size)
        nn.init.zeros_(self.threshold_projection.weight)
        nn.init.zeros_(self.threshold_projection.bias)
        self.hparams["threshold_inputs"] = table
        self.encoder_variable_selection.register_forward_hook(self._add_distances)

    def _add_distances(self, module, args, output):
        embedding, weights = output
        return embedding + self.threshold_projection(self._distances), weights

    def add_incident_head(self, weight: float) -> None:
        """Train the network's state to hold whether an incident is under way at each future step.

        A linear head reads the decoder state (the input of the output layer, from which every
        metric's quantiles are read) and gives, per future step and metric, the log-odds that an
        incident driven by that metric is under way then (from its precursor to its end). Its
        binary cross-entropy against the labels' marks (the loss weights' incident codes,
        ``incident_metric_codes``) is added to the training loss, ``weight`` times (the
        quantile loss, summed over the 14 metrics, is about 80 on the default preset's
        validation windows); labels are its targets, never inputs. Validation loss stays the
        forecasts' alone, so it compares with networks trained without the head. The forecasts
        and the risk score do not read the head: it only shapes the state they are read from.
        """
        if hasattr(self, "incident_head"):
            return
        self.incident_head = nn.Linear(self.hparams.hidden_size, len(METRIC_NAMES))
        #: The head's loss at each training batch (read by the trainer's progress lines).
        self.incident_losses: list[float] = []
        self.hparams["incident_head"] = float(weight)
        self._hook_state()

    def add_nofix_head(self, weight: float) -> None:
        """Add a second set of quantile outputs: what each metric does if nobody fixes it.

        An incident ends when someone fixes it, at a time nothing in the context tells; trained
        on those drops, the forecasts pull a ramp back down within hours, which is right for
        the forecast and wrong for a warning. This head reads the same decoder state as the
        forecasts (a copy of their output layer, so it starts from the same outputs) and is
        trained with the aftermath of every incident left out of its loss where the window's
        origin precedes the fix (``MaskedQuantileLoss.skip_aftermath``), the incident's metric
        counting ``weight`` times; the forecasts keep the ordinary loss. Validation loss stays
        the forecasts'.
        """
        if hasattr(self, "nofix_layer"):
            return
        copies = []
        for layer in self.output_layer:  # fresh layers: a deep copy would copy the state hook
            twin = nn.Linear(layer.in_features, layer.out_features)
            twin.load_state_dict(layer.state_dict())
            copies.append(twin)
        self.nofix_layer = nn.ModuleList(copies)
        self.nofix_loss = make_loss()
        for metric_loss in self.nofix_loss.metrics:
            metric_loss.incident_weight = float(weight)
        self.hparams["nofix_head"] = float(weight)
        self._hook_state()

    def _hook_state(self) -> None:
        if getattr(self, "_state_hooked", False):
            return
        first = self.output_layer[0] if isinstance(self.output_layer, nn.ModuleList) else None
        (first or self.output_layer).register_forward_pre_hook(self._keep_state)
        self._state_hooked = True

    def _keep_state(self, module, args):
        self._state = args[0]

    def nofix_prediction(self, x: dict) -> list[torch.Tensor]:
        """Return the no-fix head's quantiles (in the metrics' units) for the last forward."""
        return self.transform_output(
            [layer(self._state) for layer in self.nofix_layer], target_scale=x["target_scale"]
        )

    def training_step(self, batch, batch_idx):
        log = super().training_step(batch, batch_idx)
        weight = batch[1][1]
        if hasattr(self, "incident_head") and weight is not None and self._state is not None:
            aux = incident_head_loss(self.incident_head(self._state), weight)
            log["loss"] = log["loss"] + self.hparams["incident_head"] * aux
            self.incident_losses.append(float(aux.detach()))
        if hasattr(self, "nofix_layer") and self._state is not None:
            x = batch[0]
            aux = self.nofix_loss(
                self.nofix_prediction(x),
                batch[1],
                encoder_target=x["encoder_target"],
                encoder_lengths=x["encoder_lengths"],
            )
            log["loss"] = log["loss"] + aux
        return log

    def validation_step(self, batch, batch_idx):
        x, y = batch
        log, out = self.step(x, y, batch_idx)
        log.update(self.create_log(x, y, out, batch_idx))
        self.validation_step_outputs.append(detach(log))
        self._window_log_losses.append(
            window_log_losses(self.loss, out["prediction"], y, x["encoder_target"]).detach()
        )
        sums, counts = naive_window_errors(out["prediction"], y, x["encoder_target"])
        self._naive_errors.append((x["groups"][:, 0].detach(), sums.detach(), counts.detach()))
        return log

    def on_validation_epoch_start(self):
        self._window_log_losses.clear()
        self._naive_errors.clear()
        super().on_validation_epoch_start()

    def val_log_loss(self) -> float:
        """Return the mean of ``window_log_losses`` over this validation pass's windows and
        metrics (NaN before any), what ``linborg train --select-by val_log_loss`` picks by."""
        if not self._window_log_losses:
            return float("nan")
        values = torch.cat(self._window_log_losses)
        values = values[torch.isfinite(values)]
        return float(values.mean()) if values.numel() else float("nan")

    def val_naive_ratio(self, eps) -> float:
        """Return ``naive_ratio`` of this validation pass (NaN before any), what ``linborg
        train --select-by val_naive_ratio`` picks by. ``eps``: (14,) ratio floors."""
        if not self._naive_errors:
            return float("nan")
        series, sums, counts = (
            torch.cat(part).cpu().double().numpy() for part in zip(*self._naive_errors, strict=True)
        )
        return naive_ratio(series, sums, counts, np.asarray(eps, np.float64))

    def forward(self, x: dict) -> dict:
        if hasattr(self, "threshold_projection"):
            # Read by the encoder variable selection's hook during this call.
            self._distances = threshold_features(
                x, self.hparams.x_reals, self.hparams.x_categoricals, self.threshold_levels
            ).to(self.threshold_projection.weight)
        if hasattr(self, "level_projection"):
            # Read by the static variable selection's hook during this call.
            self._levels = level_features(x["target_scale"]).to(self.level_projection.weight)
        if hasattr(self, "trend_projection"):
            # Read by the decoder variable selection's hook during this call.
            self._trends = trend_features(x, self.hparams.x_reals, x["decoder_cont"].size(1)).to(
                self.trend_projection.weight
            )
        if hasattr(self, "naive_weights"):
            # Read by the output layers' hooks during this call.
            self._naive = naive_forecasts(x, self.hparams.x_reals, x["decoder_cont"].size(1))
        out = super().forward(with_seasonal(x, self.hparams.x_reals))
        if self.read_nofix and hasattr(self, "nofix_layer"):
            out = out._replace(prediction=self.nofix_prediction(x))
        return out


#: The level inputs: each metric's window centre, then its scale (``level_features``).
LEVEL_FEATURES = [f"level_{m}" for m in METRIC_NAMES] + [f"spread_{m}" for m in METRIC_NAMES]
#: Percentages enter as tenths of their range; other units through asinh (0.0001 to 10^4 MB/s).
_PERCENT = torch.tensor([METRICS_BY_NAME[m].unit == "percent" for m in METRIC_NAMES])


def level_features(target_scale) -> torch.Tensor:
    """Return (batch, 28) level inputs from the normaliser's (centre, scale) per metric.

    ``target_scale``: the list of (batch, 2) tensors that training batches and
    ``Forecaster.inputs`` both carry, so the two paths cannot disagree.
    """
    center = torch.stack([ts[:, 0] for ts in target_scale], 1).float()
    scale = torch.stack([ts[:, 1] for ts in target_scale], 1).float()
    percent = _PERCENT.to(center.device)  # the batch may sit on a GPU
    level = torch.where(percent, center / 10.0, torch.asinh(center))
    spread = torch.where(percent, scale / 10.0, torch.asinh(scale))
    return torch.cat([level, spread], 1)


#: The trend inputs: for each metric, the least-squares line over the window's last TREND_SPANS
#: steps (1 h and 6 h), extended to each future step (``trend_features``).
TREND_SPANS = (12, 72)
TREND_FEATURES = [f"trend{n}_{m}" for n in TREND_SPANS for m in METRIC_NAMES]
#: A trend input is the line's rise from now, in the window's own units (its normalised
#: encoder values), clipped to this: a noisy hour extended 8 hours can run far off.
TREND_CLIP = 10.0


def trend_features(x: dict, x_reals, steps: int) -> torch.Tensor:
    """Return (batch, steps, 28) trend inputs from the normalised encoder targets in ``x``.

    For future step h (1-based) and span n: the least-squares slope of the last n encoder
    values of the metric, per step, times h, clipped to +-TREND_CLIP. Training batches and
    ``Forecaster.inputs`` both carry ``encoder_cont``, so the two paths cannot disagree.
    """
    names = list(x_reals)
    src = [names.index(m) for m in METRIC_NAMES]
    enc = x["encoder_cont"][..., src].float()  # (batch, encoder steps, 14)
    ahead = torch.arange(1, steps + 1, dtype=enc.dtype, device=enc.device)[None, :, None]
    parts = []
    for n in TREND_SPANS:
        t = torch.arange(n, dtype=enc.dtype, device=enc.device) - (n - 1) / 2
        slope = (enc[:, -n:] * t[None, :, None]).sum(1) / (t * t).sum()  # (batch, 14)
        parts.append((slope[:, None, :] * ahead).clamp(-TREND_CLIP, TREND_CLIP))
    return torch.cat(parts, 2)


#: The naive forecasts the naive mix weighs (``naive_forecasts``), in this order.
NAIVE_FORECASTS = ("last_value", "seasonal_naive", "mean_24h")


def naive_forecasts(x: dict, x_reals, steps: int) -> torch.Tensor:
    """Return (batch, steps, 14, 3) naive forecasts in the window's normalised units.

    For each future step and metric: the last value, the value 24 hours before that step
    (``SEASONAL_POSITIONS``) and the 24-hour mean, each read from the normalised encoder
    targets, which training batches and ``Forecaster.inputs`` both carry.
    """
    names = list(x_reals)
    src = [names.index(m) for m in METRIC_NAMES]
    enc = x["encoder_cont"][..., src].float()  # (batch, encoder steps, 14)
    positions = torch.as_tensor(SEASONAL_POSITIONS[:steps], device=enc.device)
    shape = (enc.size(0), steps, len(METRIC_NAMES))
    last = enc[:, -1:].expand(shape)
    seasonal = enc[:, positions]
    mean = enc.mean(1, keepdim=True).expand(shape)
    return torch.stack([last, seasonal, mean], -1)


#: A distance input is clipped to this: far below warning, "how far" stops mattering.
THRESHOLD_CLIP = (-8.0, 4.0)
#: Profiles the table does not name (the model's code for an unknown profile) use these.
FALLBACK_PROFILE = "generic"


def threshold_levels(table: dict, codes: dict) -> torch.Tensor:
    """Return (profile codes, 2, 14) warning and critical levels from a thresholds table.

    ``table``: {profile: {metric: {"warning": w, "critical": c}}}; ``codes``: the model's
    {profile: code}. A code whose profile the table lacks gets FALLBACK_PROFILE's levels.
    """
    out = torch.zeros(max(codes.values()) + 1, 2, len(METRIC_NAMES))
    for profile, code in codes.items():
        levels = table.get(profile) or table[FALLBACK_PROFILE]
        for j, m in enumerate(METRIC_NAMES):
            out[code, 0, j] = float(levels[m]["warning"])
            out[code, 1, j] = float(levels[m]["critical"])
    return out


def threshold_features(x: dict, x_reals, x_categoricals, levels: torch.Tensor) -> torch.Tensor:
    """Return (batch, encoder steps, 14) distances of each past value to its warning level.

    A distance is (value - warning) / (critical - warning): 0 at warning, 1 at critical,
    negative below warning (for cpu_idle_pct, whose levels fall, the same formula makes "past
    warning" positive too), clipped to THRESHOLD_CLIP and 0 where the server lacks the metric.
    The values are rebuilt from the normalised encoder targets and ``target_scale``, which
    training batches and ``Forecaster.inputs`` both carry, so the two paths cannot disagree.
    """
    names = list(x_reals)
    src = [names.index(m) for m in METRIC_NAMES]
    present = [names.index(c) for c in PRESENT_COLUMNS]
    enc = x["encoder_cont"].float()
    center = torch.stack([ts[:, 0] for ts in x["target_scale"]], 1).float()
    scale = torch.stack([ts[:, 1] for ts in x["target_scale"]], 1).float()
    value = enc[..., src] * scale[:, None] + center[:, None]
    code = x["encoder_cat"][:, 0, list(x_categoricals).index(PROFILE)]
    warning, critical = levels[code, 0], levels[code, 1]  # (batch, 14)
    distance = (value - warning[:, None]) / (critical - warning)[:, None]
    return distance.clamp(*THRESHOLD_CLIP) * (enc[:, :1, present] > 0)


def with_seasonal(x: dict, x_reals) -> dict:
    """Return ``x`` with the decoder's seasonal columns set from the encoder's targets."""
    names = list(x_reals)
    if SEASONAL_COLUMNS[0] not in names:
        return x
    src = [names.index(m) for m in METRIC_NAMES]
    dst = [names.index(c) for c in SEASONAL_COLUMNS]
    positions = torch.as_tensor(SEASONAL_POSITIONS)
    dec = x["decoder_cont"].clone()
    steps = dec.size(1)
    seasonal = x["encoder_cont"][:, positions[:steps]][..., src]
    dec[..., dst] = seasonal
    return {**x, "decoder_cont": dec}


def build_model(
    dataset: TimeSeriesDataSet,
    preset: dict,
    level_inputs: bool = False,
    trend_inputs: bool = False,
    threshold_inputs: dict | None = None,
    incident_head: float = 0.0,
    nofix_head: float = 0.0,
    naive_mix: bool = False,
    unknown_profile: bool = False,
) -> TemporalFusionTransformer:
    """Return a fresh TFT for ``dataset`` with the preset's hyperparameters."""
    model = SeasonalTFT.from_dataset(
        dataset,
        naive_mix=naive_mix,
        unknown_profile=unknown_profile,
        incident_head=incident_head,
        nofix_head=nofix_head,
        level_inputs=level_inputs,
        trend_inputs=trend_inputs,
        threshold_inputs=threshold_inputs,
        # The seasonal inputs are decoder-only: the encoder has the real values themselves.
        allowed_encoder_known_variable_names=list(MODEL_TIME_FEATURES),
        loss=make_loss(),
        logging_metrics=nn.ModuleList([]),
        output_size=[len(QUANTILES)] * len(METRIC_NAMES),
        lstm_layers=1,
        reduce_on_plateau_patience=2,
        **{k: preset[k] for k in MODEL_HPARAMS},
    )
    if list(model.hparams.x_reals) != reals_order():
        raise RuntimeError(f"unexpected model input order {model.hparams.x_reals}")
    return model


@dataclass
class Forecast:
    """The model's forecast for a batch of servers."""

    #: (servers, 14, 96, 3): p10, p50, p90 for each metric and future step, in metric units.
    values: np.ndarray
    #: (servers, 14) True where the server has the metric; forecasts of absent ones are NaN.
    present: np.ndarray
    #: (servers, 14) share of the 24-hour window actually present.
    completeness: np.ndarray


class Forecaster:
    """Run a trained TFT on raw 24-hour windows; batched across servers, no pandas."""

    def __init__(
        self, model: TemporalFusionTransformer, spec: dict, chunk: int = 50, fused: bool = True
    ):
        from linborg.fused import fused_selections

        self.model = model.eval()
        self.spec = spec
        self.chunk = chunk
        # The batched variable selection (linborg/fused.py): same numbers, ~25% less time.
        self._fused = fused_selections(model) if fused else {}
        # The floors the bundle was trained with (bundles before the relative floor: 0).
        floors = spec.get("min_scale") or MIN_SCALE
        self._min_scale = torch.tensor([float(floors[m]) for m in METRIC_NAMES])
        self._relative_floor = float(spec.get("relative_floor", 0.0 if spec else RELATIVE_FLOOR))
        self._seasonal = SEASONAL_COLUMNS[0] in list(model.hparams.x_reals)
        self.center_steps = center_steps_of(model)
        self._profile_code = profile_codes()
        #: The network reads a plain host's profile as ``unknown`` (``network_profiles``).
        self.unknown_profile = bool(model.hparams.get("unknown_profile", False))
        #: The bundle's plain-host network (``linborg.bundle.PLAIN``): it forecasts the servers
        #: ``network_profiles`` calls ``unknown``, this network every other one. None: this
        #: network forecasts every server.
        self.plain: Forecaster | None = None
        lo = np.array([METRICS_BY_NAME[m].min for m in METRIC_NAMES], np.float32)
        hi = np.array([METRICS_BY_NAME[m].max for m in METRIC_NAMES], np.float32)
        self._range = (lo[None, :, None, None], hi[None, :, None, None])
        # The band's per-metric, per-step factors fitted after training (linborg/calibration.py);
        # bundles without them are served as the network gives them.
        self.calibration = calibration.factors(spec.get("interval_calibration"))

    def inputs(
        self, filled: np.ndarray, present: np.ndarray, profiles, end_time_idx, timezone="UTC"
    ) -> dict:
        """Return the TFT input dict for filled windows (the same tensors the dataset makes).

        ``timezone``: where the fleet's business hours are (the time features' clock).
        """
        enc = torch.from_numpy(np.ascontiguousarray(filled, np.float32))
        b = enc.shape[0]
        total = ENCODER_STEPS + HORIZON_STEPS
        ends = np.broadcast_to(np.asarray(end_time_idx, np.int64), (b,))
        # Time features once per distinct end step (a fleet's windows usually share one).
        uniq, which = np.unique(ends, return_inverse=True)
        steps = uniq[:, None] - ENCODER_STEPS + 1 + np.arange(total)[None, :]
        known = torch.from_numpy(known_features(steps, timezone))
        known = known[torch.from_numpy(which.reshape(-1))]
        center = enc[:, -self.center_steps :].mean(1)
        std = enc.std(1) + torch.finfo(torch.float32).eps
        scale = floored_scale(std, center, self._min_scale, self._relative_floor)
        # Seasonal columns stay zero here: SeasonalTFT.forward fills them, as in training.
        n_p = len(PRESENT_COLUMNS)
        n_k = len(MODEL_TIME_FEATURES) + (len(SEASONAL_COLUMNS) if self._seasonal else 0)
        cont = torch.zeros(b, total, n_p + n_k + len(METRIC_NAMES))
        cont[..., :n_p] = torch.from_numpy(np.asarray(present, np.float32))[:, None, :]
        cont[..., n_p : n_p + len(MODEL_TIME_FEATURES)] = known
        cont[:, :ENCODER_STEPS, n_p + n_k :] = (enc - center[:, None]) / scale[:, None]
        unknown = self._profile_code["nan"]
        codes = torch.tensor([self._profile_code.get(p, unknown) for p in profiles])
        cat = codes[:, None, None].expand(b, total, 1)
        return {
            "encoder_cat": cat[:, :ENCODER_STEPS],
            "decoder_cat": cat[:, ENCODER_STEPS:],
            "encoder_cont": cont[:, :ENCODER_STEPS],
            "decoder_cont": cont[:, ENCODER_STEPS:],
            "encoder_lengths": torch.full((b,), ENCODER_STEPS, dtype=torch.long),
            "decoder_lengths": torch.full((b,), HORIZON_STEPS, dtype=torch.long),
            "target_scale": [
                torch.stack([center[:, i], scale[:, i]], -1) for i in range(len(METRIC_NAMES))
            ],
        }

    def raw(self, x: dict) -> np.ndarray:
        """Return the network's quantiles (B, 14, 96, 3) for an input dict."""
        from linborg.fused import installed

        with torch.inference_mode(), installed(self._fused):
            out = self.model(x)["prediction"]
        return torch.stack(list(out), 1).numpy()

    def predict(
        self,
        values: np.ndarray,
        profiles: list[str],
        end_time_idx,
        timezone: str = "UTC",
        servers: list[str] | None = None,
    ) -> Forecast:
        """Forecast the 96 steps after ``end_time_idx`` from (servers, 288, 14) raw windows.

        ``timezone`` is the IANA zone of the fleet's business hours: the time features
        (morning spike, market hours, end of day, weekend) are computed on its clock, as the
        training data's were on UTC.

        ``servers``: the servers' names, which a network trained with ``--unknown-profile``
        and a bundle with a plain-host network need (a plain host's profile is ``unknown`` to
        the one; the other sends plain hosts to its plain-host network) and others ignore.

        Missing samples are NaN. Metrics a server lacks get NaN forecasts and present=False;
        forecasts are clipped to each metric's valid range and quantiles kept in order.
        """
        values = np.asarray(values, np.float32)
        if values.ndim != 3 or values.shape[1:] != (ENCODER_STEPS, len(METRIC_NAMES)):
            raise ValueError(f"windows must be (servers, {ENCODER_STEPS}, 14), got {values.shape}")
        if (self.unknown_profile or self.plain is not None) and servers is None:
            raise ValueError(
                "this bundle tells plain hosts from the profiles' servers: pass the servers' names"
            )
        ends = np.broadcast_to(np.asarray(end_time_idx, np.int64), (len(values),))
        if self.plain is None:
            return self._forecast(values, list(profiles), ends, timezone, servers)
        # Plain hosts go to the plain-host network, every other server to this one.
        plain = np.array([p == UNKNOWN_PROFILE for p in network_profiles(servers, profiles)])
        n, m = len(values), len(METRIC_NAMES)
        out = np.empty((n, m, HORIZON_STEPS, len(QUANTILES)), np.float32)
        present = np.empty((n, m), bool)
        completeness = np.empty((n, m))
        for network, rows in ((self.plain, np.flatnonzero(plain)), (self, np.flatnonzero(~plain))):
            if len(rows):
                sub = network._forecast(
                    values[rows],
                    [profiles[i] for i in rows],
                    ends[rows],
                    timezone,
                    [servers[i] for i in rows],
                )
                out[rows], present[rows], completeness[rows] = (
                    sub.values,
                    sub.present,
                    sub.completeness,
                )
        return Forecast(out, present, completeness)

    def _forecast(self, values, profiles, ends, timezone, servers) -> Forecast:
        """Forecast every window with this network (``predict`` after its checks)."""
        if self.unknown_profile:
            profiles = network_profiles(servers, profiles)
        n, m = len(values), len(METRIC_NAMES)
        out = np.empty((n, m, HORIZON_STEPS, len(QUANTILES)), np.float32)
        present = np.empty((n, m), np.float32)
        completeness = np.empty((n, m))
        # Filled per chunk, so memory grows with the chunk, not with the fleet.
        for a in range(0, n, self.chunk):
            b = slice(a, a + self.chunk)
            filled, present[b], completeness[b] = fill_window(values[b])
            out[b] = self.raw(self.inputs(filled, present[b], profiles[b], ends[b], timezone))
        out.sort(axis=-1)
        if self.calibration is not None:
            calibration.apply(out, *self.calibration)
        np.clip(out, *self._range, out=out)  # in place: at 10,000 servers each copy is 160 MB
        out[present <= 0] = np.nan
        return Forecast(out, present > 0, completeness)
