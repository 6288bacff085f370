"""How much early warning does the 24-hour context hold? A reference detector, not a product.

The TFT's risk score reads its forecasts. This asks how far any reading of the context could
go: a gradient-boosted classifier (scikit-learn) on simple per-metric features of the last 24
hours (the value's distance to its warning level, its rises over 5 minutes to 23 hours, its
window's mean, spread and highest value, yesterday at this time), trained directly on the
incident labels of ``--train`` files to say "an incident driven by this metric begins within 8
hours or is under way", then read as a server's largest log-odds over its metrics and scored on
``--data`` with the early-warning scoreboard's rules (trainer/scoreboard.py, checks every 15
minutes), as ``linborg evaluate`` scores the TFT. Labels are this detector's training targets,
which the product never has on a user's fleet: it is a reference for what the context allows
(as ``perfect_forecast`` is one for what the future allows), never a detector to ship.

With ``--model``: the same classifier on the bundle's forecasts instead (p10/p50/p90 at 5 min,
30 min, 1, 2, 4 and 8 h against the warning and critical levels, and the risk formula's reading
at five levels between them), on both together, and on the network's decoder state (the hidden
vector its quantiles are read from, at 5 min, 30 min, 1, 2 and 4 h): does the network keep what
the context holds? A bundle trained with ``--incident-head`` also has its head read as it is
(a server's largest log-odds over its metrics and the next 8 hours), with no classifier; read
above its healthy ceilings (per profile and metric, its largest log-odds at a healthy check of
the ``--train`` files, the risk calibration's rule); and as the classifier's only input.
That forecasts every check of every file (about 6 minutes per 96 servers x 7 days on 2
cores).

With ``--window-normalised``: the same classifier on the context as the network sees it, each
window centred on its last hour and divided by its spread (so the distance to the warning level
is gone), and with that centre and spread beside it (the network's level inputs).

Run: .venv/bin/python benchmarks/context_separability.py --train out/train_x3.parquet
     --train out/calibration_a.parquet --data out/dev.parquet [--model models/default]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from linborg.contract import METRIC_NAMES, PROFILE_NAMES, STEP_SECONDS
from linborg.features import ENCODER_STEPS, dense_frame
from linborg.parquet import read_metrics
from linborg.risk import exceedance, threshold_arrays, urgency
from linborg.thresholds import load_thresholds
from linborg.trainer import scoreboard as sbd

CHECK_STEPS = 3  # 15 minutes, the scoreboard's checks
AHEAD_SECONDS = 8 * 3600  # the label: an onset within 8 hours, or the incident under way
LAGS = (1, 3, 6, 12, 24, 48, 96, 276)  # rises over 5 min ... 23 h
HORIZON_AT = np.array([1, 6, 12, 24, 48, 96]) - 1  # forecast steps read: 5 min ... 8 h
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)  # from warning (0) to critical (1)
SEEDS = (0, 1, 2)


def load(path: str, repair: bool = False, last_days: float | None = None) -> dict:
    """Return a file's dense values and checks (the checks of its last ``last_days`` only, when
    given); ``repair`` as ``linborg train`` repairs real data (``read_metrics``)."""
    frame, meta = read_metrics(path, allow_missing=True, repair=repair)
    names, profiles, values, first = dense_frame(frame)
    checks = np.arange(ENCODER_STEPS - 1, values.shape[1], CHECK_STEPS)
    if last_days is not None:
        checks = checks[checks > values.shape[1] - 1 - last_days * 86400 / STEP_SECONDS]
    return {
        "path": path,
        "names": names,
        "profiles": profiles,
        "values": values,
        "checks": checks,
        "first": first,
        "times": (first + checks) * STEP_SECONDS,
        "labels": meta.get("incidents") or [],
        "present": np.isfinite(values).any(axis=1),  # (servers, metrics)
        # (warning, critical, direction), each (servers, metrics): read once per file
        "levels": threshold_arrays(load_thresholds(), profiles, list(METRIC_NAMES)),
    }


def levels_of(z: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the (warning, critical, direction) arrays of ``z``'s servers and metrics."""
    return z.get("levels") or threshold_arrays(load_thresholds(), z["profiles"], list(METRIC_NAMES))


def oriented(z: dict, x: np.ndarray, axis_servers: int = 0) -> np.ndarray:
    """Return ``x`` in units of each metric's warning-to-critical distance, past warning > 0
    (so a "below" metric such as cpu_idle_pct reads the same way). ``x``'s axes from
    ``axis_servers`` on are (servers, ..., metrics)."""
    warn, crit, d = levels_of(z)
    shape = [1] * x.ndim
    shape[axis_servers] = len(z["profiles"])
    shape[-1] = len(METRIC_NAMES)
    w, c, dd = (a.reshape(shape) for a in (warn, crit, d))
    return dd * (x - w) / np.abs(c - w)


def context_features(z: dict) -> np.ndarray:
    """Return (checks, servers, metrics, features) from each check's last 24 hours."""
    u = oriented(z, z["values"])  # servers, steps, metrics
    out = []
    with np.errstate(invalid="ignore"):
        for o in z["checks"]:
            w = u[:, o - ENCODER_STEPS + 1 : o + 1]
            now = w[:, -1]
            f = [
                now,
                w[:, -12:].mean(1),
                np.nanstd(w, 1),
                np.nanmax(w, 1),
                now - np.nanmax(w[:, :-48], 1),
                np.nanmean(w[:, :-48], 1),
                *(now - w[:, -1 - lag] for lag in LAGS),
                w[:, 0],  # yesterday at this time
                w[:, 12] - w[:, 0],  # and what it did in the hour after
            ]
            out.append(np.stack(f, -1))
    return np.stack(out).astype(np.float32)


def window_features(z: dict, with_level: bool) -> np.ndarray:
    """Return (checks, servers, metrics, features) from the last 24 hours as the network sees
    them: each window centred on its last hour and divided by its floored spread
    (``linborg.model.floored_scale``), so the distance to the warning level is gone; with
    ``with_level``, that centre and spread too (what ``--level-inputs`` gives the network)."""
    from linborg.model import MIN_SCALE, RELATIVE_FLOOR, floored_scale

    floors = np.array([MIN_SCALE[m] for m in METRIC_NAMES])
    out = []
    with np.errstate(invalid="ignore"):
        for o in z["checks"]:
            w = z["values"][:, o - ENCODER_STEPS + 1 : o + 1]
            center = np.nanmean(w[:, -12:], 1)
            scale = floored_scale(np.nanstd(w, 1, ddof=1), center, floors, RELATIVE_FLOOR)
            u = (w - center[:, None]) / scale[:, None]
            now = u[:, -1]
            f = [
                now,
                np.nanmax(u, 1),
                now - np.nanmax(u[:, :-48], 1),
                np.nanmean(u[:, :-48], 1),
                *(now - u[:, -1 - lag] for lag in LAGS),
                u[:, 0],
                u[:, 12] - u[:, 0],
            ]
            if with_level:
                f += [center, scale]
            out.append(np.stack(f, -1))
    return np.stack(out).astype(np.float32)


def network_features(z: dict, forecaster) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return (checks, servers, metrics, features) twice from the bundle at each check: its
    forecast, and its decoder state before the output layer (the hidden vector every metric's
    quantiles are read from, at the forecast steps of ``HORIZON_AT`` but the last, the same
    for each metric of a server); third, for a bundle trained with ``--incident-head``, the
    head's largest log-odds over the 8 hours (checks, servers, metrics), else None."""
    warn, crit, d = levels_of(z)
    weight = urgency(HORIZON_AT[-1] + 1)
    model = forecaster.model
    grabbed: list[np.ndarray] = []
    heads: list[np.ndarray] = []

    def keep(module, args, out):
        grabbed.append(out[:, HORIZON_AT[:-1]].detach().numpy())
        if hasattr(model, "incident_head"):
            heads.append(model.incident_head(out).amax(1).detach().numpy())

    hook = model.pre_output_gate_norm.register_forward_hook(keep)
    forecast, state, head = [], [], []
    start = time.time()
    try:
        for c, o in enumerate(z["checks"]):
            grabbed.clear()
            heads.clear()
            window = z["values"][:, o - ENCODER_STEPS + 1 : o + 1]
            fc = forecaster.predict(window, z["profiles"], z["first"] + o, servers=z["names"])
            hidden = np.concatenate(grabbed).reshape(len(z["profiles"]), 1, -1)
            state.append(
                np.broadcast_to(hidden, (hidden.shape[0], len(METRIC_NAMES), hidden.shape[2]))
            )
            f = np.sort(fc.values, axis=-1)  # servers, metrics, steps, 3
            q = np.moveaxis(f[:, :, HORIZON_AT, :], 1, -1)  # servers, H, 3, metrics
            q = np.sort(oriented(z, q), axis=2)  # the last quantile is the one nearest trouble
            parts = [np.moveaxis(q, -1, 1).reshape(len(z["profiles"]), len(METRIC_NAMES), -1)]
            for a in LEVELS:
                level = (warn + a * (crit - warn))[:, :, None]
                risk = exceedance(f, level, d[:, :, None]) * weight
                parts.append(100 * risk.max(-1)[..., None])
            forecast.append(np.concatenate(parts, -1))
            if heads:
                head.append(np.concatenate(heads))
            if c % 200 == 0:
                print(
                    f"context_separability: {z['path']} check {c + 1}/{len(z['checks'])}, "
                    f"{time.time() - start:.0f}s",
                    flush=True,
                )
    finally:
        hook.remove()
    return (
        np.stack(forecast).astype(np.float32),
        np.stack(state).astype(np.float32),
        np.stack(head).astype(np.float32) if head else None,
    )


def targets(z: dict) -> np.ndarray:
    """Return (checks, servers, metrics): an incident this metric drives begins within 8 h
    of the check or is under way."""
    y = np.zeros((len(z["checks"]), len(z["names"]), len(METRIC_NAMES)), bool)
    index = {n: i for i, n in enumerate(z["names"])}
    for inc in z["labels"]:
        if inc.get("metric") not in METRIC_NAMES or str(inc.get("server")) not in index:
            continue
        onset = pd.Timestamp(inc["onset"]).timestamp()
        end = pd.Timestamp(inc.get("end") or inc["onset"]).timestamp()
        near = (z["times"] >= onset - AHEAD_SECONDS) & (z["times"] <= end)
        y[near, index[str(inc["server"])], METRIC_NAMES.index(inc["metric"])] = True
    return y


def with_ids(z: dict, x: np.ndarray) -> np.ndarray:
    """Append the profile and metric (categorical) to every row of ``x``."""
    prof = np.array([PROFILE_NAMES.index(p) for p in z["profiles"]], np.float32)
    ids = np.stack(
        np.meshgrid(prof, np.arange(len(METRIC_NAMES), dtype=np.float32), indexing="ij"), -1
    )
    return np.concatenate([x, np.broadcast_to(ids[None], (*x.shape[:3], 2))], -1)


def rows(z: dict, x: np.ndarray) -> np.ndarray:
    """Return the rows of the metrics each server has (checks x servers x present metrics)."""
    return x[np.broadcast_to(z["present"][None], x.shape[:3])]


def fit(train: list[dict], xs: list[np.ndarray], seed: int):
    """Return the classifier fitted on the training files' rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.concatenate([rows(z, with_ids(z, a)) for z, a in zip(train, xs, strict=True)])
    y = np.concatenate([rows(z, targets(z)) for z in train])
    k = x.shape[1]
    clf = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.05,
        min_samples_leaf=100,
        l2_regularization=1.0,
        categorical_features=[k - 2, k - 1],
        random_state=seed,
    )
    clf.fit(x, y)
    return clf


def server_scores(clf, test: dict, xt: np.ndarray) -> np.ndarray:
    """Return ``test``'s server scores (checks, servers): the classifier's largest log-odds
    over the metrics each server has."""
    present = np.broadcast_to(test["present"][None], xt.shape[:3])
    logit = np.full(xt.shape[:3], -np.inf)
    logit[present] = clf.decision_function(rows(test, with_ids(test, xt)))
    return logit.max(-1)


def head_above_healthy(train: list[dict], heads: list[np.ndarray], test: dict, head: np.ndarray):
    """Return the test file's server scores (checks, servers) from the incident head read
    above its healthy ceilings: per profile and metric, the head's largest log-odds at a
    healthy check of the training files (``trainer.riskcal.healthy_checks``, the risk
    calibration's rule) is subtracted, as the risk score counts only risk above healthy. A
    profile and metric without a healthy check there gets no reading."""
    from linborg.trainer.riskcal import healthy_checks

    ceiling = np.full((len(PROFILE_NAMES), len(METRIC_NAMES)), -np.inf)
    for z, h in zip(train, heads, strict=True):
        ok = healthy_checks(z["names"], z["times"], z["labels"]).T  # checks, servers
        for s, p in enumerate(z["profiles"]):
            got = np.where(ok[:, s, None] & z["present"][s][None], h[:, s], -np.inf).max(0)
            i = PROFILE_NAMES.index(p)
            ceiling[i] = np.maximum(ceiling[i], got)
    c = ceiling[[PROFILE_NAMES.index(p) for p in test["profiles"]]][None]
    read = test["present"][None] & np.isfinite(c)
    return np.where(read, head - np.where(read, c, 0.0), -np.inf).max(-1)


def best_at_budget(test: dict, score: np.ndarray) -> dict:
    """Return the scoreboard's best member of thresholds over the top 3% of ``score``."""
    finite = score[np.isfinite(score)]
    cuts = sorted(set(np.round(np.percentile(finite, np.linspace(97, 100, 400)), 4)))
    detectors = [
        sbd.Detector(f"score >= {t:g}", "tft_risk", {"threshold": t}, (score >= t).T) for t in cuts
    ]
    every = CHECK_STEPS * STEP_SECONDS
    sb = sbd.scoreboard(detectors, test["times"], test["names"], test["labels"], every)
    return sb["best"]["tft_risk"] | {"limit": sb["limit_share_precursor_45m"]}


def warnings_without_labels(z: dict, score: np.ndarray, threshold: float) -> dict:
    """Return the warning episodes of ``score >= threshold`` on a file without incident labels
    (``linborg evaluate``'s count: each episode once), per 100 server-days, the servers they
    fall on, and the file's servers and server-days."""
    from linborg.trainer.evaluate import warnings_without_labels as count

    d = sbd.Detector("reading", "tft_risk", {"threshold": threshold}, (score >= threshold).T)
    w = count([d], z["times"], z["names"], CHECK_STEPS * STEP_SECONDS)
    return w["detectors"]["reading"] | {"servers": w["servers"], "server_days": w["server_days"]}


def print_row(name: str, seed, b: dict) -> None:
    """Print one table row from a ``best_at_budget`` result."""
    types = ", ".join(f"{t} {r['warned']}/{r['incidents']}" for t, r in b["recall_by_type"].items())
    print(
        f"| {name} | {seed} | {b['recall_at_budget']:.2f} ({b['warned']}/{b['incidents']}) | "
        f"{b['false_per_100_server_days']:.2f} | {b['lead_median_minutes']} | {types} | "
        f"{b['limit']:.2f} |",
        flush=True,
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="append", required=True, help="labelled Parquet (repeat)")
    ap.add_argument("--data", required=True, help="the labelled fleet to score (Parquet)")
    ap.add_argument("--model", help="a bundle: also read its forecasts")
    ap.add_argument(
        "--window-normalised",
        action="store_true",
        help="also the context as the network sees it (normalised per window)",
    )
    ap.add_argument(
        "--unlabelled",
        action="append",
        default=[],
        help="a file without incident labels (a real fleet, repaired as `linborg train` does): "
        "how often the context classifier, at the threshold chosen on --data, warns there (repeat)",
    )
    ap.add_argument(
        "--unlabelled-days",
        type=float,
        default=7.0,
        help="checks of each --unlabelled file's last this many days (default 7)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = ap.parse_args(argv)
    train = [load(p) for p in args.train]
    test = load(args.data)
    unlabelled = [load(p, repair=True, last_days=args.unlabelled_days) for p in args.unlabelled]
    for z in (*train, test):
        if not z["labels"]:
            ap.error(f"{z['path']} has no incident labels")
    inputs = {"context": [context_features(z) for z in (*train, test)]}
    if args.window_normalised:
        for name, level in (
            ("context normalised per window", False),
            ("normalised + level and spread", True),
        ):
            inputs[name] = [window_features(z, level) for z in (*train, test)]
    if args.model:
        from linborg.bundle import load_bundle

        forecaster = load_bundle(args.model)
        fc, state, head = zip(
            *(network_features(z, forecaster) for z in (*train, test)), strict=True
        )
        inputs["forecast"] = list(fc)
        inputs["forecast + context"] = [
            np.concatenate([a, b], -1) for a, b in zip(fc, inputs["context"], strict=True)
        ]
        inputs["decoder state"] = list(state)
    print(f"trained on {', '.join(args.train)}; scored on {args.data}")
    print()
    print(
        "| classifier on | seed | recall >= 30 min at <= 1 false / 100 server-days | "
        "false / 100 server-days | median lead (min) | per type (warned/scored) | limit |"
    )
    print("|---|---|---|---|---|---|---|")
    if args.model and head[-1] is not None:
        # The head is read as it is: no classifier, nothing fitted on --train.
        logit = np.where(test["present"][None], head[-1], -np.inf).max(-1)
        print_row("the network's incident head, read as it is", "-", best_at_budget(test, logit))
        above = head_above_healthy(train, list(head[:-1]), test, head[-1])
        print_row(
            "the incident head above its healthy ceilings (from --train)",
            "-",
            best_at_budget(test, above),
        )
        inputs["incident head"] = [h[..., None] for h in head]
    elsewhere = []
    for name, xs in inputs.items():
        for seed in args.seeds:
            clf = fit(train, xs[:-1], seed)
            b = best_at_budget(test, server_scores(clf, test, xs[-1]))
            print_row(name, seed, b)
            if name == "context":
                for z in unlabelled:
                    score = server_scores(clf, z, context_features(z))
                    w = warnings_without_labels(z, score, b["params"]["threshold"])
                    elsewhere.append((z["path"], seed, b["params"]["threshold"], w))
    if elsewhere:
        print()
        print(
            "The context classifier at the threshold chosen on --data, on files without labels "
            f"(checks of their last {args.unlabelled_days:g} days; every warning episode counted, "
            "its truth unknown):"
        )
        print()
        print(
            "| file | seed | threshold | warning episodes | per 100 server-days | servers warned |"
        )
        print("|---|---|---|---|---|---|")
        for path, seed, t, w in elsewhere:
            print(
                f"| {path} | {seed} | {t:g} | {w['episodes']} | {w['per_100_server_days']:.2f} | "
                f"{w['servers_warned']} of {w['servers']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
