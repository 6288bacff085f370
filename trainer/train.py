"""Train the TFT on a contract-schema metrics table and return the model and a summary."""

from __future__ import annotations

import collections
import copy
import datetime as dt
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from linborg import calibration
from linborg.contract import (
    METRIC_NAMES,
    PROFILE,
    SERVER,
    STEP_SECONDS,
    TIMESTAMP,
    ContractError,
)
from linborg.cpus import usable_cpus
from linborg.features import (
    ENCODER_STEPS,
    HORIZON_STEPS,
    PRESENT_COLUMNS,
    SENTINEL,
    TIME_IDX,
    UNKNOWN_PROFILE,
    build_model_frame,
    dense_frame,
    network_profiles,
    present_column,
)
from linborg.model import (
    AFTERMATH_CODE_BASE,
    INCIDENT_METRIC_COLUMN,
    INCIDENT_METRIC_WEIGHT,
    PRESETS,
    Forecaster,
    build_model,
    make_dataset,
)
from linborg.thresholds import load_thresholds
from linborg.validate import tidy, validate

#: Metrics a plain node_exporter host does not have; training shows the model such hosts.
NODE_EXPORTER_ABSENT = ("java_cpu_pct", "back_close_wait", "front_close_wait")
#: Share of training servers copied without NODE_EXPORTER_ABSENT, and without one random metric.
ABSENT_COPY_SHARE = 0.3
SINGLE_DROP_SHARE = 0.1
#: Share of training windows drawn from those whose context shows an incident under way (its
#: origin between the precursor's start and the incident's end; labels select windows, they
#: are never model inputs). Incidents are a few percent of the fleet's time, so without this
#: the network mostly learns that metrics return to normal, and pulls every ramp back down.
INCIDENT_WINDOW_SHARE = 0.3
#: Share of the time range held out for validation (early stopping).
VALIDATION_SHARE = 0.15
MIN_STEPS = ENCODER_STEPS + HORIZON_STEPS
#: Steps after an incident's end whose loss on the incident's metric is skipped with
#: ``train(skip_aftermath=True)`` (one horizon): see ``incident_metric_codes``.
AFTERMATH_STEPS = HORIZON_STEPS
#: Interval calibration (linborg/calibration.py) forecasts each server's validation span from
#: origins every CALIBRATION_STRIDE steps (co-prime with the 288 steps of a day, so they rotate
#: through it), widened so that at most CALIBRATION_WINDOWS windows are forecast (about a
#: minute on 2 cores at hidden size 24).
CALIBRATION_STRIDE = 37
CALIBRATION_WINDOWS = 4000


def check_trainable(frame: pd.DataFrame) -> None:
    """Refuse data that cannot train a model, saying why (all reasons at once)."""
    validate(frame, allow_missing=True, source="training data")
    problems = []
    lengths = frame.groupby(SERVER, observed=True).size()
    if len(lengths) < 2:
        problems.append(f"only {len(lengths)} server; training needs at least 2")
    long_enough = lengths[lengths >= MIN_STEPS + HORIZON_STEPS]
    if len(long_enough) == 0:
        problems.append(
            f"too short: no server has {MIN_STEPS + HORIZON_STEPS} steps "
            f"({(MIN_STEPS + HORIZON_STEPS) * 5 / 60:.0f} hours: 24 h context, 8 h horizon "
            f"and 8 h to validate); the longest has {lengths.max() if len(lengths) else 0}"
        )
    present = [m for m in METRIC_NAMES if m in frame.columns and frame[m].notna().any()]
    if not present:
        problems.append("no LINBORG metric has any value")
    if problems:
        raise ContractError("unusable training data: " + "; ".join(problems))


def add_absent_copies(model_frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Return the frame plus copies of some servers with metrics made absent.

    Copies are named '<server>~<what>' so they are separate series; the originals stay whole.
    """
    servers = model_frame[SERVER].unique()
    copies = []
    pick = rng.choice(servers, size=int(round(len(servers) * ABSENT_COPY_SHARE)), replace=False)
    for s in pick:
        part = model_frame[model_frame[SERVER] == s].copy()
        part[SERVER] = f"{s}~node_exporter"
        for m in NODE_EXPORTER_ABSENT:
            part[m] = np.float32(SENTINEL)
            part[present_column(m)] = np.float32(0.0)
        copies.append(part)
    pick = rng.choice(servers, size=int(round(len(servers) * SINGLE_DROP_SHARE)), replace=False)
    for s in pick:
        m = METRIC_NAMES[int(rng.integers(len(METRIC_NAMES)))]
        part = model_frame[model_frame[SERVER] == s].copy()
        part[SERVER] = f"{s}~no_{m}"
        part[m] = np.float32(SENTINEL)
        part[present_column(m)] = np.float32(0.0)
        copies.append(part)
    return pd.concat([model_frame, *copies], ignore_index=True) if copies else model_frame


def validation_split(model_frame: pd.DataFrame) -> pd.Series:
    """Return, per series, the first time index held out for validation (early stopping).

    Each series holds out the end of its own history: VALIDATION_SHARE of its span, at least
    one horizon. A fleet whose servers share one time range gets one split time; files from
    different periods trained together each keep their own.
    """
    t = model_frame.groupby(SERVER, observed=True)[TIME_IDX].agg(["min", "max"])
    held = np.maximum(HORIZON_STEPS, ((t["max"] - t["min"]) * VALIDATION_SHARE).astype(int))
    split = t["max"] - held
    split.index = split.index.astype(str)
    return split


def _coprime_stride(stride: int) -> int:
    """Return the smallest stride >= ``stride`` sharing no factor with the 288 steps of a day."""
    while math.gcd(stride, 288) != 1:
        stride += 1
    return stride


def validation_forecasts(
    forecaster: Forecaster,
    frame: pd.DataFrame,
    split: pd.Series,
    timezone: str = "UTC",
    limit: int = CALIBRATION_WINDOWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (forecasts, actuals) of windows forecasting each server's validation span.

    ``split``: per server, the first step held out (``validation_split``); copies with absent
    metrics are left out (their originals stand for them). Origins start one step before the
    split and are every ``CALIBRATION_STRIDE`` steps or wider, at most ``limit`` windows in all.
    Servers that share a split (one file's fleet) are forecast together. Shapes: (windows, 14,
    96, 3) and (windows, 14, 96); empty when no server has a whole horizon after its split.
    """
    split = split[~split.index.str.contains("~", regex=False)]
    names = frame[SERVER].astype(str)
    counted = []
    for start, members in split.groupby(split).groups.items():
        part = frame[names.isin(set(members))]
        if len(part):
            servers, profiles, values, first = dense_frame(part)
            origin = max(int(start) - 1 - first, ENCODER_STEPS - 1)
            counted.append((servers, profiles, values, first, origin))
    total_steps = sum(len(c[0]) * max(0, c[2].shape[1] - HORIZON_STEPS - c[4]) for c in counted)
    stride = _coprime_stride(max(CALIBRATION_STRIDE, math.ceil(total_steps / max(limit, 1))))
    forecasts, actuals = [], []
    for servers, profiles, values, first, origin in counted:
        for o in range(origin, values.shape[1] - HORIZON_STEPS, stride):
            window = values[:, o - ENCODER_STEPS + 1 : o + 1]
            fc = forecaster.predict(window, profiles, first + o, timezone, servers=servers)
            forecasts.append(fc.values)
            actuals.append(values[:, o + 1 : o + 1 + HORIZON_STEPS].transpose(0, 2, 1))
    if not forecasts:
        m = len(METRIC_NAMES)
        return np.empty((0, m, HORIZON_STEPS, 3)), np.empty((0, m, HORIZON_STEPS))
    return np.concatenate(forecasts), np.concatenate(actuals)


def fit_calibration(model, frame, split, timezone="UTC", limit=CALIBRATION_WINDOWS) -> dict:
    """Return the interval calibration of a trained network on its validation span."""
    forecasts, actuals = validation_forecasts(Forecaster(model, {}), frame, split, timezone, limit)
    return calibration.fit(forecasts, actuals)


def _coverage(forecasts: np.ndarray, actuals: np.ndarray) -> float | None:
    """Share of finite actuals inside [p10, p90]; None without any."""
    ok = np.isfinite(actuals) & np.isfinite(forecasts[..., 1])
    if not ok.any():
        return None
    inside = (actuals >= forecasts[..., 0]) & (actuals <= forecasts[..., 2])
    return float(inside[ok].mean())


def recalibrate(forecaster: Forecaster, frame: pd.DataFrame, timezone: str = "UTC") -> dict:
    """Fit a bundle's interval calibration anew on the end of ``frame``'s history.

    The windows are those training would validate on (each server's last VALIDATION_SHARE,
    ``validation_split``), forecast without the bundle's current calibration. Returns the
    calibration, plus the p10-p90 coverage of those windows before and after it
    (``coverage_before``, ``coverage_after``; the latter is in-sample).
    """
    frame, _ = tidy(frame)
    check_trainable(frame)
    split = validation_split(build_model_frame(frame, timezone))
    served = forecaster.calibration
    forecaster.calibration = None
    try:
        forecasts, actuals = validation_forecasts(forecaster, frame, split, timezone)
    finally:
        forecaster.calibration = served
    fitted = calibration.fit(forecasts, actuals)
    before = _coverage(forecasts, actuals)
    factors = calibration.factors(fitted)
    if factors is not None and len(forecasts):
        calibration.apply(forecasts, *factors)
    return {**fitted, "coverage_before": before, "coverage_after": _coverage(forecasts, actuals)}


def incident_steps(incident: dict) -> tuple[int, int] | None:
    """Return an incident's first and last step (absolute TIME_IDX), None without an onset.

    It runs from the precursor's start (the onset when there is none) to the incident's end
    (the onset when there is none).
    """
    onset = incident.get("onset")
    if onset is None:
        return None
    first = pd.Timestamp(incident.get("precursor_start") or onset).timestamp()
    last = pd.Timestamp(incident.get("end") or onset).timestamp()
    return int(first) // STEP_SECONDS, int(last) // STEP_SECONDS


def incident_window_mask(decoded_index: pd.DataFrame, incidents: list[dict] | None) -> np.ndarray:
    """Return, per training window, whether its context shows an incident under way.

    A window counts when its forecast origin (the last context step) lies between the start
    of an incident's precursor (its onset when it has none) and the incident's end: the ramp
    has begun in the 24 hours the model sees, and the horizon shows where it leads. Windows
    whose horizon holds a precursor that has not begun yet are not drawn on purpose: nothing
    in their context announces it, so they would only teach a wider band everywhere.

    ``decoded_index``: the dataset's windows (server, ``time_idx_first_prediction``). A copy
    of a server with absent metrics ('<server>~...') shares its original's incidents.
    """
    mask = np.zeros(len(decoded_index), bool)
    spans: dict[str, list[tuple[int, int]]] = {}
    for inc in incidents or []:
        span = incident_steps(inc)
        if span is not None:
            spans.setdefault(str(inc["server"]), []).append(span)
    servers = decoded_index[SERVER].astype(str).str.split("~").str[0].to_numpy()
    origin = decoded_index["time_idx_first_prediction"].to_numpy() - 1
    for server, ranges in spans.items():
        rows = servers == server
        if not rows.any():
            continue
        for first, last in ranges:
            mask[rows] |= (origin[rows] >= first) & (origin[rows] <= last)
    return mask


def incident_metric_codes(
    model_frame: pd.DataFrame, incidents: list[dict], aftermath_steps: int = 0
) -> np.ndarray:
    """Return, per row of the model frame, 1 + the index of the metric an incident drives.

    Rows of a server (or its copies with absent metrics) from an incident's precursor start to
    its end get the code of the incident's ``metric``; other rows 0. Incidents
    without a precursor (a hardware fault's uptime reset, a traffic surge) are left out:
    nothing before them announces them, so weighting them would only teach the model to expect
    jumps. The training loss counts the marked steps of that metric more (``linborg.model``).

    With ``aftermath_steps`` (``train(skip_aftermath=True)``: AFTERMATH_STEPS), the step k
    steps after the incident's end (k = 0 for the first fixed step) gets
    ``-(code + AFTERMATH_CODE_BASE * k)``: the loss skips that metric there in the windows whose
    origin comes before the fix (decoder position j >= k, ``linborg.model.MaskedQuantileLoss``),
    and counts it in windows whose context already shows the fix. An incident ends when
    someone (the generator) fixes it, a restart or a clean-up, at a time nothing in the context
    before it tells; trained on those drops, the shipped network expects one within 8 hours
    of a ramp and pulls a leak's forecast back down (dev fleet, memory at 88% and climbing 30
    minutes before onset: p50 at 4 h 67.5%). Where two aftermaths overlap, the earlier
    incident's holds (one code per step). Off by default: on the dev fleet it raised recall but
    cost accuracy on the incident metrics after the fix (docs/training.md, under "Presets":
    `--skip-aftermath`). Both are loss weights chosen by the labels, never model inputs.
    """
    codes = np.zeros(len(model_frame), np.float32)
    servers = model_frame[SERVER].astype(str).str.split("~").str[0].to_numpy()
    steps = model_frame[TIME_IDX].to_numpy()
    marked = []
    for inc in incidents:
        metric, span = inc.get("metric"), incident_steps(inc)
        if metric not in METRIC_NAMES or span is None or not inc.get("precursor_start"):
            continue
        first, last = span
        server = servers == str(inc["server"])
        code = METRIC_NAMES.index(metric) + 1
        codes[server & (steps >= first) & (steps <= last)] = code
        marked.append((server, last, code))
    for server, last, code in marked:  # after every incident's own span is marked
        rows = server & (steps > last) & (steps <= last + aftermath_steps) & (codes == 0)
        codes[rows] = -(code + AFTERMATH_CODE_BASE * (steps[rows] - last - 1))
    return codes


def window_sampler(mask: np.ndarray, share: float, seed: int):
    """Return a sampler drawing ``share`` of windows from ``mask`` (None when nothing to do)."""
    n_hit = int(mask.sum())
    if n_hit == 0 or n_hit == len(mask) or share <= 0:
        return None
    weights = np.where(mask, share / n_hit, (1 - share) / (len(mask) - n_hit))
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double), len(mask), replacement=True, generator=gen
    )


def validation_sample(mask: np.ndarray, share: float | None, size: int, seed: int) -> list[int]:
    """Return the validation windows: ``size`` of them, fixed, spread over every server.

    Drawn once without replacement (so every epoch scores the same windows) with the training
    batches' mix: ``share`` of them from ``mask`` (windows with an incident under way) when the
    training draws them at that share, uniformly otherwise. Returned in index order.
    """
    n = len(mask)
    if size >= n:
        return list(range(n))
    n_hit = int(mask.sum())
    if share is None or n_hit == 0 or n_hit == n:
        weights = np.full(n, 1.0 / n)
    else:
        weights = np.where(mask, share / n_hit, (1 - share) / (n - n_hit))
        weights = weights / weights.sum()
    rng = np.random.default_rng(seed)
    # Without replacement, the share can exceed what the incident windows hold; then all of
    # them are taken and the rest is drawn from the others.
    chosen = rng.choice(n, size=size, replace=False, p=weights)
    return sorted(int(i) for i in chosen)


#: How the training log names each repair of ``linborg.validate.tidy``.
REPAIR_WORDS = {
    "out_of_range": "out-of-range samples made missing",
    "inf": "infinite samples made missing",
    "off_grid": "timestamps snapped to the 5-minute grid",
    "merged": "samples merged into a step they shared after snapping",
}


def check_timezone(timezone: str) -> None:
    """Refuse a time zone name the time features cannot use."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ContractError(f"unknown time zone '{timezone}' (use an IANA name)") from None


def _load_init(init):
    """Return the Forecaster of the bundle to fine-tune, refusing one that cannot continue."""
    from linborg.bundle import load_bundle
    from linborg.features import SEASONAL_COLUMNS

    base = load_bundle(init)
    if SEASONAL_COLUMNS[0] not in list(base.model.hparams.x_reals):
        raise ContractError(
            f"model bundle {init} was written before the seasonal input and cannot be "
            "fine-tuned; train from scratch (--preset default)"
        )
    return base


def best_at(best_epoch: int) -> str:
    """Return where a run's best validation loss was: 'at epoch N' or 'at the start'."""
    return "at the start" if best_epoch < 0 else f"at epoch {best_epoch + 1}"


def split_by_network(frame: pd.DataFrame, init) -> list[tuple[str | None, pd.DataFrame]]:
    """Split a fleet between the networks of bundle ``init`` that forecast its servers.

    Return [(subdirectory, its servers' rows)] for each network with servers here: None for
    the bundle's own network, ``linborg.bundle.PLAIN`` for its plain-host network (the plain
    hosts of ``linborg.features.network_profiles``). A bundle without one gets everything.
    """
    from linborg.bundle import PLAIN

    if not (Path(init) / PLAIN).is_dir():
        return [(None, frame)]
    first = frame.groupby(SERVER, observed=True)[PROFILE].first()
    kinds = network_profiles([str(s) for s in first.index], [str(p) for p in first])
    plain = {str(s) for s, k in zip(first.index, kinds, strict=True) if k == UNKNOWN_PROFILE}
    is_plain = frame[SERVER].astype(str).isin(plain).to_numpy()
    parts = [(None, frame[~is_plain]), (PLAIN, frame[is_plain])]
    out = []
    for sub, part in parts:
        if len(part):
            part = part.reset_index(drop=True)
            part.attrs.update(frame.attrs)
            out.append((sub, part))
    return out


#: What ``train(select_by=...)`` may pick the kept epoch by. "val_loss": the mean scaled
#: quantile loss over the validation windows (what the network is trained on); "val_log_loss":
#: the mean over windows and metrics of log(1 + each window's scaled loss)
#: (``linborg.model.window_log_losses``), in which a burst after a flat window counts about as
#: much as any other window instead of deciding the mean.
#: "val_naive_ratio": per series and metric, the p50's mean absolute error over the validation
#: windows divided by the metric's best naive forecast's (``linborg.model.naive_ratio``),
#: geometric mean over them: what ``linborg evaluate``'s per-series table reports.
SELECT_BY = ("val_loss", "val_log_loss", "val_naive_ratio")


#: What ``train`` uses for ``select_by``, ``log_loss``, ``average_last`` and ``horizon_decay``
#: from scratch.
RECIPE_DEFAULTS = {
    "select_by": "val_loss",
    "log_loss": False,
    "average_last": 0,
    "horizon_decay": 0.0,
}


def recipe_of(training: dict | None) -> dict:
    """Return the select_by, log_loss, average_last and horizon_decay a bundle's network was
    trained with.

    ``training``: its ``model.json`` training summary (None: from scratch, RECIPE_DEFAULTS).
    Bundles written before ``average_last`` was recorded give the number of epochs averaged.
    """
    if not training:
        return dict(RECIPE_DEFAULTS)
    averaged = training.get("average_last")
    if averaged is None:
        averaged = len(training.get("averaged_epochs") or [])
    return {
        "select_by": training.get("selected_by") or RECIPE_DEFAULTS["select_by"],
        "log_loss": bool(training.get("log_loss")),
        "average_last": int(averaged),
        "horizon_decay": float(training.get("horizon_decay") or 0.0),
    }


def average_states(states: list[dict]) -> dict:
    """Return the element-wise mean of state dicts (floating tensors; others from the last)."""
    out = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            out[key] = (sum(s[key].double() for s in states) / len(states)).to(last.dtype)
        else:
            out[key] = last.clone()
    return out


def _progress_callback(
    log: Callable[[str], None], budget_minutes: float, select_by: str, average_last: int = 0
):
    import lightning.pytorch as pl

    from linborg.thresholds import ratio_floors

    eps = np.asarray(ratio_floors())

    class EpochReport(pl.Callback):
        """Log one line per epoch and keep the best weights in memory (no checkpoint files).

        "Best" is the lowest ``select_by`` (one of SELECT_BY); all three are logged.
        """

        def __init__(self):
            self.began = time.monotonic()
            self.best = float("inf")
            self.best_state = None
            self.best_epoch = -1
            self.best_record = None
            self.start = None
            self.start_state = None
            self.history = []
            #: The last ``average_last`` epochs' weights (``train(average_last=...)``).
            self.recent = collections.deque(maxlen=max(average_last, 1))
            #: Set while the averaged weights are scored; their scores land in ``averaged``.
            self.scoring_average = False
            self.averaged = None

        def on_validation_epoch_end(self, trainer, module):
            if trainer.sanity_checking:
                return
            # Lightning runs this before the module's own epoch-end hook, so the module's
            # per-window losses of this pass are read here, not from logged metrics.
            record = {
                "val_loss": float(trainer.callback_metrics.get("val_loss", float("nan"))),
                "val_log_loss": module.val_log_loss(),
                "val_naive_ratio": module.val_naive_ratio(eps),
            }
            score = record[select_by]
            words = " ".join(f"{key} {record[key]:.4f}" for key in SELECT_BY)
            if self.scoring_average:
                self.averaged = record
                log(f"train: the mean of the last {len(self.recent)} epochs' weights: {words}")
                return
            if trainer.state.fn != "fit":
                # The starting network of a fine-tune, scored before any training: it is kept
                # unless an epoch beats it.
                self.start = record
                self.best, self.best_epoch, self.best_record = score, -1, record
                self.best_state = copy.deepcopy(module.state_dict())
                self.start_state = self.best_state
                log(f"train: the starting network's {words}")
                return
            train = float(trainer.callback_metrics.get("train_loss_epoch", float("nan")))
            epoch = trainer.current_epoch
            self.history.append({"epoch": epoch, "train_loss": train, **record})
            if score < self.best:
                self.best, self.best_epoch, self.best_record = score, epoch, record
                self.best_state = copy.deepcopy(module.state_dict())
            if average_last:
                self.recent.append(copy.deepcopy(module.state_dict()))
            elapsed = (time.monotonic() - self.began) / 60
            per_epoch = elapsed / (epoch + 1)
            left = min(per_epoch * (trainer.max_epochs - epoch - 1), budget_minutes - elapsed)
            head = getattr(module, "incident_losses", None)
            if head:
                # The incident head's training loss over this epoch's batches.
                self.history[-1]["incident_loss"] = float(np.mean(head))
                head.clear()
            last = self.history[-1]
            aux = f" incident_loss {last['incident_loss']:.4f}" if "incident_loss" in last else ""
            log(
                f"train: epoch {epoch + 1}/{trainer.max_epochs} {words}{aux} "
                f"(best {select_by} {self.best:.4f} {best_at(self.best_epoch)}), "
                f"{elapsed:.1f} min elapsed, at most {max(left, 0):.1f} min left"
            )

    return EpochReport()


#: Learning-rate schedules of ``train(lr_schedule=...)``. "plateau": the preset's rate, halved
#: when the validation loss stalls (pytorch-forecasting's ReduceLROnPlateau, patience 2).
#: "cosine": the rate falls from the preset's along half a cosine over the run's budget, to
#: COSINE_FLOOR of it when the budget (minutes or epochs, whichever ends first) runs out; the
#: run goes on to that end (no early stopping).
LR_SCHEDULES = ("plateau", "cosine")
COSINE_FLOOR = 0.02


def cosine_learning_rate(base: float, progress: float) -> float:
    """Return the cosine schedule's rate at ``progress`` (0 at the start, 1 at the budget's end)."""
    p = min(max(progress, 0.0), 1.0)
    return base * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * p)))


def _cosine_callback(base: float, budget_minutes: float, total_steps: int):
    import lightning.pytorch as pl

    class BudgetCosine(pl.Callback):
        """Set the rate before every batch from how much of the budget is spent."""

        def __init__(self):
            self.began = time.monotonic()

        def progress(self, step: int) -> float:
            minutes = (time.monotonic() - self.began) / 60
            return max(minutes / budget_minutes, step / total_steps)

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            rate = cosine_learning_rate(base, self.progress(trainer.global_step))
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = rate

    return BudgetCosine()


def _schedule_callbacks(params: dict) -> list:
    """Return the callbacks that set the rate and end the run for ``params["lr_schedule"]``.

    plateau: early stopping after ``patience`` epochs without a lower validation loss.
    cosine: the rate over the budget and no early stopping, so the run reaches the low rates
    at the budget's end (stopped early, it keeps an epoch trained at a high rate); the best
    epoch is still the one kept.
    """
    from lightning.pytorch.callbacks import EarlyStopping

    if params["lr_schedule"] == "cosine":
        total = params["max_epochs"] * params["batches_per_epoch"]
        return [_cosine_callback(params["learning_rate"], params["max_minutes"], total)]
    return [EarlyStopping(monitor="val_loss", patience=params["patience"], mode="min")]


def train(
    frame: pd.DataFrame,
    preset: str = "default",
    seed: int = 7,
    progress: bool = True,
    max_minutes: float | None = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    incidents: list[dict] | None = None,
    incident_share: float = INCIDENT_WINDOW_SHARE,
    incident_weight: float = INCIDENT_METRIC_WEIGHT,
    skip_aftermath: bool = False,
    timezone: str = "UTC",
    init=None,
    learning_rate: float | None = None,
    max_epochs: int | None = None,
    level_inputs: bool = False,
    trend_inputs: bool = False,
    threshold_inputs: bool = False,
    incident_head: float = 0.0,
    nofix_head: float = 0.0,
    naive_mix: bool = False,
    lr_schedule: str = "plateau",
    unknown_profile: bool = False,
    freeze_known_profiles: bool = False,
    select_by: str | None = None,
    log_loss: bool | None = None,
    average_last: int | None = None,
    horizon_decay: float | None = None,
):
    """Train a TFT on ``frame`` (contract schema); return (model, training summary).

    ``incidents``: labels (server, precursor_start, onset) used only to draw ``incident_share``
    of the training windows from those whose context shows an incident under way, and to count
    the loss of the metric an incident drives ``incident_weight`` times during it;
    ``skip_aftermath``: and not at all for one horizon after its end (``incident_metric_codes``).
    ``timezone``: the IANA zone of the fleet's business hours (the time features' clock); serve
    the bundle with the same ``timezone`` in the exporter's configuration.
    ``init``: a bundle directory to continue from (fine-tuning): its network, weights and
    lineage are kept, the preset gives only the optimiser settings and the budget.
    ``learning_rate``: replaces the preset's. ``max_epochs``: replaces the preset's epoch cap;
    with it a run stops after the same epochs on any machine fast enough to finish them within
    the budget (``max_minutes``), where a budget alone trains more epochs on a faster machine.
    ``level_inputs``: the network also sees each window's level and spread
    (``linborg.model.SeasonalTFT.add_level_inputs``); a bundle given with ``init`` gets them
    added, starting from no effect. ``trend_inputs``: likewise each future step sees where the
    window's recent straight lines reach by then (``SeasonalTFT.add_trend_inputs``).
    ``threshold_inputs``: likewise each past step's distance to the packaged warning level of
    its metric and profile (``SeasonalTFT.add_threshold_inputs``). ``incident_head``: the weight
    of a second objective, the incidents under way at each future step read from the
    network's state (``SeasonalTFT.add_incident_head``; 0 for none); it needs incident labels.
    ``nofix_head``: the incident weight of a second set of quantile outputs trained without
    the incidents' aftermath (``SeasonalTFT.add_nofix_head``; 0 for none); it needs labels.
    ``naive_mix``: each forecast adds a mix of last value, the same time yesterday and the
    24-hour mean weighted by the network's state (``SeasonalTFT.add_naive_mix``); a bundle
    given with ``init`` gets it added, starting from no effect.
    ``lr_schedule``: one of LR_SCHEDULES. ``unknown_profile``: the network sees a plain host
    (profile ``generic``, a hostname of no profile's convention) as the profile ``unknown``
    (``linborg.features.network_profiles``); a bundle given with ``init`` that has it keeps it.
    ``freeze_known_profiles``: continuing ``init`` with ``unknown_profile``, train only the
    ``unknown`` profile's embedding (``SeasonalTFT.freeze_known_profiles``).
    ``select_by``: one of SELECT_BY, what the kept epoch (or, with ``init``, the starting
    network) is the lowest of. ``log_loss``: train on log(1 + each window's scaled loss)
    (``MaskedQuantileLoss.log_windows``), and so validate on it too (``val_loss``).
    ``average_last``: at least 2 to keep the mean of the last that many epochs' weights (fewer
    when the run had fewer) instead of the best epoch's; with ``init`` the mean is kept only if
    it beats the starting network in ``select_by``. 0: off.
    ``horizon_decay``: decoder step j's loss counts j ** -horizon_decay (mean 1 over the
    steps; ``MaskedQuantileLoss.horizon_decay``): 1 counts each doubling of the horizon about
    alike, where 0 gives the last 4 hours half of the loss and the first 30 minutes 1/16.
    These four, when None: what ``init``'s network was trained with (``recipe_of``), else
    RECIPE_DEFAULTS.
    """
    import lightning.pytorch as pl

    if log is None:

        def log(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

    if preset not in PRESETS:
        raise ContractError(f"unknown preset '{preset}'; use one of: {', '.join(PRESETS)}")
    params = dict(PRESETS[preset])
    if not 0 <= incident_share < 1:
        raise ContractError(f"incident share {incident_share} is not in [0, 1)")
    if not incident_weight >= 1:
        raise ContractError(f"incident weight {incident_weight} is below 1")
    if max_minutes is not None:
        params["max_minutes"] = max_minutes
    if learning_rate is not None:
        if not learning_rate > 0:
            raise ContractError(f"learning rate {learning_rate} is not above 0")
        params["learning_rate"] = learning_rate
    if max_epochs is not None:
        if not max_epochs >= 1:
            raise ContractError(f"max epochs {max_epochs} is below 1")
        params["max_epochs"] = int(max_epochs)
    if lr_schedule not in LR_SCHEDULES:
        raise ContractError(
            f"unknown learning-rate schedule '{lr_schedule}'; use one of: {', '.join(LR_SCHEDULES)}"
        )
    params["lr_schedule"] = lr_schedule
    check_timezone(timezone)
    repaired = dict(frame.attrs.get("repaired") or {})
    frame, more = tidy(frame)
    repaired = {k: repaired.get(k, 0) + v for k, v in more.items()}
    if any(repaired.values()):
        log(
            "train: repaired the data: "
            + ", ".join(f"{v} {REPAIR_WORDS[k]}" for k, v in repaired.items() if v)
        )
    check_trainable(frame)
    if incident_head < 0:
        raise ContractError(f"incident head weight {incident_head} is below 0")
    if incident_head and not incidents:
        raise ContractError("the incident head needs the data's incident labels; these have none")
    if nofix_head and not (nofix_head >= 1 and incidents):
        raise ContractError("the no-fix head needs incident labels and a weight of 1 or more")
    if freeze_known_profiles and not (init is not None and unknown_profile):
        raise ContractError("freezing the known profiles needs --init and --unknown-profile")
    base = None
    if init is not None:
        base = _load_init(init)
        if base.plain is not None:
            log(
                f"train: continuing the network of {init} for the profiles' servers, not its "
                "plain-host network (linborg train --init continues that one on plain hosts)"
            )
    given = {
        "select_by": select_by,
        "log_loss": log_loss,
        "average_last": average_last,
        "horizon_decay": horizon_decay,
    }
    recipe = recipe_of(base.spec.get("training") if base is not None else None)
    inherited = [k for k, v in given.items() if v is None and recipe[k] != RECIPE_DEFAULTS[k]]
    if inherited:
        log(
            f"train: continuing {init} with what it was trained with: "
            + ", ".join(f"{k} {recipe[k]}" for k in inherited)
            + " (give the options to change them)"
        )
    select_by, log_loss, average_last, horizon_decay = (
        recipe[k] if v is None else v for k, v in given.items()
    )
    if not 0 <= horizon_decay <= 2:
        raise ContractError(f"horizon decay {horizon_decay} is outside 0-2")
    if average_last and not average_last >= 2:
        raise ContractError(f"averaging the last {average_last} epochs needs at least 2")
    if select_by not in SELECT_BY:
        raise ContractError(f"unknown selection '{select_by}'; use one of: {', '.join(SELECT_BY)}")
    pl.seed_everything(seed, workers=True, verbose=False)
    torch.set_num_threads(threads or usable_cpus())
    began = time.monotonic()

    if base is not None and base.unknown_profile:
        unknown_profile = True
    model_frame = build_model_frame(frame, timezone, unknown_profile)
    unknown_servers = int(
        (model_frame.groupby(SERVER, observed=True)[PROFILE].first() == UNKNOWN_PROFILE).sum()
    )
    model_frame = add_absent_copies(model_frame, np.random.default_rng(seed))
    split = validation_split(model_frame)
    lengths = model_frame.groupby(SERVER).size()
    model_frame = model_frame[model_frame[SERVER].isin(lengths[lengths >= MIN_STEPS].index)]
    weighted = bool(incidents)
    if weighted:
        model_frame = model_frame.assign(
            **{
                INCIDENT_METRIC_COLUMN: incident_metric_codes(
                    model_frame,
                    incidents,
                    AFTERMATH_STEPS if skip_aftermath or nofix_head else 0,
                )
            }
        )
    full_ds = make_dataset(model_frame, weight=INCIDENT_METRIC_COLUMN if weighted else None)
    starts = split.reindex(full_ds.decoded_index[SERVER].astype(str)).to_numpy()
    # Training windows end before their server's split; validation windows forecast after it.
    train_ds = full_ds.filter(lambda idx: idx["time_idx_last"].to_numpy() < starts)
    val_ds = full_ds.filter(lambda idx: idx["time_idx_first_prediction"].to_numpy() >= starts)
    hit = incident_window_mask(train_ds.decoded_index, incidents)
    sampler = window_sampler(hit, incident_share, seed)
    if sampler is None:
        train_dl = train_ds.to_dataloader(
            train=True, batch_size=params["batch_size"], num_workers=0
        )
    else:
        train_dl = train_ds.to_dataloader(
            train=True,
            batch_size=params["batch_size"],
            num_workers=0,
            shuffle=False,
            sampler=sampler,
        )
    # Validation scores the same fixed windows every epoch, drawn across all servers with the
    # training batches' incident mix (in dataset order they would be a few servers' windows).
    val_hit = incident_window_mask(val_ds.decoded_index, incidents)
    val_size = params["val_batches"] * params["batch_size"] * 2
    val_dl = val_ds.to_dataloader(
        train=False,
        batch_size=params["batch_size"] * 2,
        num_workers=0,
        sampler=validation_sample(
            val_hit, incident_share if sampler is not None else None, val_size, seed
        ),
    )
    # The packaged thresholds, never a user's overrides: the bundle keeps the table it was
    # trained with, so changing an alert's threshold does not change the network's inputs.
    table = load_thresholds().as_dict() if threshold_inputs else None
    if base is None:
        model = build_model(
            train_ds,
            params,
            level_inputs,
            trend_inputs,
            table,
            incident_head,
            nofix_head,
            naive_mix,
            unknown_profile,
        )
    else:
        model = base.model
        if level_inputs:
            model.add_level_inputs()
        if trend_inputs:
            model.add_trend_inputs()
        if table is not None:
            model.add_threshold_inputs(table)
        if incident_head:
            model.add_incident_head(incident_head)
        if nofix_head:
            model.add_nofix_head(nofix_head)
        if naive_mix:
            model.add_naive_mix()
        if unknown_profile:
            model.add_unknown_profile()
        if freeze_known_profiles:
            model.freeze_known_profiles()
        model.hparams.learning_rate = params["learning_rate"]
        model.train()
    # A bundle's network carries the weight it was trained with; this run's weight replaces it.
    for metric_loss in model.loss.metrics:
        metric_loss.incident_weight = incident_weight
        metric_loss.skip_aftermath = skip_aftermath
        metric_loss.log_windows = log_loss
        metric_loss.horizon_decay = horizon_decay
    report = _progress_callback(log, params["max_minutes"], select_by, average_last)
    callbacks = [report, *_schedule_callbacks(params)]
    trainer = pl.Trainer(
        max_epochs=params["max_epochs"],
        limit_train_batches=params["batches_per_epoch"],
        limit_val_batches=params["val_batches"],
        max_time=dt.timedelta(minutes=params["max_minutes"]),
        accelerator="auto",
        devices=1,
        gradient_clip_val=0.1,
        enable_checkpointing=False,
        logger=False,
        enable_model_summary=False,
        # A bar only on a terminal; in a log, the one line per epoch below is the progress.
        enable_progress_bar=progress and sys.stderr.isatty(),
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    log(
        f"train: preset {preset}, {model_frame[SERVER].nunique()} series "
        f"({frame[SERVER].nunique()} servers plus copies with absent metrics), "
        f"{len(train_ds)} training windows ({int(hit.sum())} with an incident under way, "
        f"drawn as {incident_share if sampler is not None else hit.mean():.0%} of batches"
        + (f", the incident's metric weighted {incident_weight:g}x" if weighted else "")
        + (", its aftermath skipped" if weighted and skip_aftermath else "")
        + "), "
        f"{len(val_ds)} validation windows, "
        f"{sum(p.numel() for p in model.parameters())} parameters, "
        f"budget {params['max_minutes']:g} min"
        + (", cosine learning rate over the budget" if lr_schedule == "cosine" else "")
        + (", the loss on a log scale per window" if log_loss else "")
        + (f", step j's loss weighted j^-{horizon_decay:g}" if horizon_decay else "")
        + (
            f", {unknown_servers} plain hosts seen as profile '{UNKNOWN_PROFILE}'"
            if unknown_profile
            else ""
        )
        + (f", continuing from {init}" if base is not None else "")
    )
    if base is not None:
        # Score the starting network on the same validation windows first: a fine-tune that
        # no epoch improves keeps the weights it started from (its band is still refitted).
        trainer.validate(model, dataloaders=val_dl, verbose=False)
    trainer.fit(model, train_dataloaders=train_dl, val_dataloaders=val_dl)
    averaged = None
    if average_last and len(report.recent) >= 2:
        # The mean of the last epochs' weights replaces the best epoch's; with ``init`` it
        # still has to beat the starting network.
        averaged = [e["epoch"] + 1 for e in report.history[-len(report.recent) :]]
        model.load_state_dict(average_states(list(report.recent)))
        report.scoring_average = True
        trainer.validate(model, dataloaders=val_dl, verbose=False)
        report.scoring_average = False
        score = report.averaged[select_by]
        if base is not None and report.start is not None and not score < report.start[select_by]:
            log(
                f"train: the mean of the last epochs' weights does not beat the starting "
                f"network's {select_by} {report.start[select_by]:.4f}; the bundle keeps its weights"
            )
            averaged = None
            report.best_epoch, report.best_record = -1, report.start
            model.load_state_dict(report.start_state)
        else:
            report.best_record = report.averaged
    elif report.best_state is not None:
        model.load_state_dict(report.best_state)
    if base is not None and report.best_epoch < 0 and averaged is None:
        log(
            f"train: no epoch beat the starting network's {select_by} {report.best:.4f}; "
            "the bundle keeps its weights"
        )
    model.eval()
    calibrating = time.monotonic()
    interval = fit_calibration(model, frame, split, timezone)
    log(
        f"train: interval calibration on {interval['windows']} validation windows "
        f"({len(interval['fitted'])} of {len(METRIC_NAMES)} metrics fitted, "
        f"{time.monotonic() - calibrating:.0f} s)"
    )
    lineage = []
    if base is not None:
        parent = base.spec.get("training") or {}
        lineage = [
            *parent.get("lineage", []),
            {
                "bundle": str(init),
                "code_revision": base.spec.get("code_revision"),
                "created": base.spec.get("created"),
                "preset": parent.get("preset"),
                "source": parent.get("source"),
                "seconds": parent.get("seconds"),
                "seed": parent.get("seed"),
                "epochs": len(parent.get("epochs") or []),
                "max_epochs": (parent.get("hyperparameters") or {}).get("max_epochs"),
            },
        ]
    summary = {
        "preset": preset,
        "seed": seed,
        "timezone": timezone,
        "init": str(init) if init is not None else None,
        "lineage": lineage,
        "repaired": repaired,
        "hyperparameters": params,
        "servers": int(frame[SERVER].nunique()),
        "server_names": sorted(map(str, frame[SERVER].unique())),
        "profiles": frame.groupby(PROFILE, observed=True)[SERVER].nunique().astype(int).to_dict(),
        "series_with_absent_copies": int(model_frame[SERVER].nunique()),
        "start": pd.Timestamp(frame[TIMESTAMP].min()).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": pd.Timestamp(frame[TIMESTAMP].max()).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": int(len(frame)),
        "metrics_present": [
            m for m in METRIC_NAMES if m in frame.columns and frame[m].notna().any()
        ],
        "present_columns": list(PRESENT_COLUMNS),
        "training_windows": int(len(train_ds)),
        "incident_windows": int(hit.sum()),
        "incident_window_share": incident_share if sampler is not None else float(hit.mean()),
        "incident_metric_weight": incident_weight if weighted else None,
        "skip_aftermath": bool(skip_aftermath and weighted),
        "log_loss": bool(log_loss),
        "horizon_decay": float(horizon_decay),
        "level_inputs": bool(model.hparams.get("level_inputs", False)),
        "trend_inputs": bool(model.hparams.get("trend_inputs", False)),
        "threshold_inputs": bool(model.hparams.get("threshold_inputs")),
        "incident_head": float(model.hparams.get("incident_head", 0.0)),
        "nofix_head": float(model.hparams.get("nofix_head", 0.0)),
        "naive_mix": bool(model.hparams.get("naive_mix", False)),
        "unknown_profile": bool(model.hparams.get("unknown_profile", False)),
        "unknown_profile_servers": unknown_servers,
        "freeze_known_profiles": bool(freeze_known_profiles),
        "validation_windows": int(len(val_ds)),
        "epochs": report.history,
        "selected_by": select_by,
        "average_last": int(average_last),
        # The epochs whose weights were averaged into the bundle's (``average_last``), or None.
        "averaged_epochs": averaged,
        "best_epoch": report.best_epoch + 1,
        "best_val_loss": report.best_record["val_loss"] if report.best_record else None,
        "best_val_log_loss": report.best_record["val_log_loss"] if report.best_record else None,
        "best_val_naive_ratio": (
            report.best_record["val_naive_ratio"] if report.best_record else None
        ),
        "start_val_loss": report.start["val_loss"] if report.start else None,
        "start_val_log_loss": report.start["val_log_loss"] if report.start else None,
        "start_val_naive_ratio": report.start["val_naive_ratio"] if report.start else None,
        "seconds": round(time.monotonic() - began, 1),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        # The band's factors per metric and step; save_bundle stores them at the top level.
        "interval_calibration": interval,
    }
    return model, summary
