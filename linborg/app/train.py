"""`linborg train`, `linborg calibrate` and `linborg evaluate`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load_frame(args: argparse.Namespace):
    """Return (frame, description) from --data, or from Prometheus (--prometheus, --config.file)."""
    from linborg.contract import ContractError

    config_file = getattr(args, "config_file", None)
    from_prometheus = bool(getattr(args, "prometheus", None) or config_file)
    if bool(args.data) == from_prometheus:
        raise ContractError(
            "give exactly one data source: --data FILE.parquet, or Prometheus with --prometheus "
            "URL and/or --config.file EXPORTER.yml"
        )
    if args.data:
        return _read_files(args)
    import time

    from linborg.contract import METRIC_NAMES, ProfileMatcher
    from linborg.exporter.config import Config, load_config, make_client
    from linborg.prom import PrometheusError
    from linborg.sources import fetch_history

    # The exporter's configuration says how to read the fleet: URL, credentials, CA, timeout,
    # the PromQL of each metric, the label names and the hostname patterns.
    cfg = load_config(config_file) if config_file else Config()
    client = make_client(cfg, args.prometheus)
    end = time.time()

    def progress(done: int, total: int) -> None:
        if not getattr(args, "quiet", False):
            print(f"\rreading history from {client.url}: {done}/{total} queries", end="",
                  file=sys.stderr, flush=True)  # fmt: skip

    try:
        frame = fetch_history(
            client,
            end - args.days * 86400,
            end,
            queries={m: cfg.query(m) for m in METRIC_NAMES},
            server_label=cfg.server_label,
            profile_label=cfg.profile_label,
            matcher=ProfileMatcher(cfg.hostname_patterns),
            progress=progress,
        )
    except PrometheusError as err:
        raise ContractError(str(err)) from None
    finally:
        if not getattr(args, "quiet", False):
            print(file=sys.stderr)
    if frame.empty:
        raise ContractError(
            f"{client.url} has no LINBORG series in the last {args.days:g} days (queries: "
            f"{cfg.query(METRIC_NAMES[0])} and the 13 others; see docs/training.md)"
        )
    return frame, f"Prometheus {client.url}, {args.days:g} days"


def _read_files(args: argparse.Namespace):
    """Return (frame, description) of the --data files, each without its held-out days.

    Several files (train and calibrate) are stacked: each keeps its own timestamps, and the
    trainer holds out the end of each server's own history for validation, so files from
    different periods train (and calibrate) together. A server name in two files is refused.
    """
    import pandas as pd

    from linborg.contract import PROFILE, SERVER, ContractError
    from linborg.parquet import read_metrics

    if len(args.data) > 1 and args.func not in (cmd_train, cmd_calibrate):
        raise ContractError("evaluate reads one --data file; give it once")
    frames, owner = [], {}
    repaired: dict[str, int] = {}
    for path in args.data:
        frame, _ = read_metrics(path, allow_missing=True, repair=True)
        for k, v in (frame.attrs.get("repaired") or {}).items():
            repaired[k] = repaired.get(k, 0) + v
        for server in frame[SERVER].astype(str).unique():
            if server in owner:
                raise ContractError(
                    f"server '{server}' is in both {owner[server]} and {path}; rename one "
                    "(a server name must mean one server)"
                )
            owner[server] = path
        frames.append(_hold_out(frame, args))
    if len(frames) == 1:
        frame = frames[0]
    else:
        for f in frames:
            f[SERVER] = f[SERVER].astype(str)
            f[PROFILE] = f[PROFILE].astype(str)
        frame = pd.concat(frames, ignore_index=True)
        frame.attrs["repaired"] = repaired
    frame.attrs["server_file"] = owner
    return frame, " + ".join(f"Parquet {p}" for p in args.data) + _held_out_words(args)


def _metadata(owner: dict[str, str]) -> tuple[list[dict], dict[str, int | None]]:
    """Return (incidents, generator seed of each server or None) from the files' metadata.

    ``owner``: the file each server came from.
    """
    from linborg.parquet import read_metadata

    incidents, seeds = [], {}
    for path in dict.fromkeys(owner.values()):
        meta = read_metadata(path)
        incidents += meta.get("incidents") or []
        file_seed = meta.get("seed") if meta.get("generator") else None
        server_seeds = meta.get("server_seeds") or {}
        for server, where in owner.items():
            if where == path:
                seeds[server] = server_seeds.get(server, file_seed)
    return incidents, seeds


def _hold_out(frame, args: argparse.Namespace):
    """Split off the file's last ``--holdout-days``: train without them, evaluate on them.

    ``evaluate`` keeps one day before them as context, so its first origin is the first
    held-out step and seasonal naive has its yesterday.
    """
    days = getattr(args, "holdout_days", None)
    if not days:
        return frame
    import pandas as pd

    from linborg.contract import STEP_SECONDS, TIMESTAMP, ContractError

    ts = pd.to_datetime(frame[TIMESTAMP], utc=True)
    begin = ts.max() - pd.Timedelta(days=days) + pd.Timedelta(seconds=STEP_SECONDS)
    training = args.func in (cmd_train, cmd_calibrate)
    keep = ts < begin if training else ts >= begin - pd.Timedelta(days=1)
    if not keep.any():
        raise ContractError(
            f"--holdout-days {days:g} leaves nothing to {'train' if training else 'evaluate'} "
            f"on: the data spans {ts.min():%Y-%m-%d %H:%M} to {ts.max():%Y-%m-%d %H:%M} UTC"
        )
    attrs = dict(frame.attrs)
    out = frame[keep.to_numpy()].reset_index(drop=True)
    out.attrs.update(attrs)
    return out


def _held_out_words(args: argparse.Namespace) -> str:
    days = getattr(args, "holdout_days", None)
    if not days:
        return ""
    if args.func in (cmd_train, cmd_calibrate):
        return f", without its last {days:g} days"
    return f", its last {days:g} days (one day before them as context)"


def _quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (accelerator lines, a product tip, a deprecation inside
    Lightning itself) out of the training log: the trainer's own lines say what matters."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def network_words(sub: str | None) -> str:
    """Return how the log names a bundle's network: its own, or the plain-host one."""
    return "plain-host network" if sub else "network for the profiles' servers"


def _networks_with_two(parts: list, command: str, needs: str, kept: str) -> list:
    """Return the (network, rows) parts with at least 2 servers; say which is left alone.

    A fleet split between a bundle's two networks (``split_by_network``): a network with one
    server here cannot be trained or fitted on it, and keeps what it has.
    """
    from linborg.contract import SERVER

    if len(parts) < 2:
        return parts
    for sub, part in parts:
        if part[SERVER].nunique() < 2:
            print(
                f"{command}: {part[SERVER].iloc[0]} is the only server here for the "
                f"{network_words(sub)}; {needs} needs at least 2, so {kept}",
                file=sys.stderr,
                flush=True,
            )
    return [(sub, part) for sub, part in parts if part[SERVER].nunique() >= 2]


def cmd_train(args: argparse.Namespace) -> int:
    import shutil

    from linborg.bundle import PLAIN, SPEC, WEIGHTS, save_bundle
    from linborg.contract import SERVER, ContractError
    from linborg.model import PLAIN_FINETUNE_LEARNING_RATE, PRESETS
    from linborg.trainer.train import best_at, split_by_network, train

    _quiet_lightning()
    if args.init and Path(args.out).resolve() == Path(args.init).resolve():
        raise ContractError(
            f"--out {args.out} is the bundle being fine-tuned; write the new bundle elsewhere "
            "and keep the parent to roll back to"
        )
    frame, source = _load_frame(args)
    incidents, seeds = _metadata(frame.attrs.get("server_file") or {})
    preset = args.preset or ("finetune" if args.init else "default")
    if preset not in PRESETS:
        raise ContractError(f"unknown preset '{preset}'; use one of: {', '.join(PRESETS)}")
    # A bundle with a plain-host network: each network continues on the servers it forecasts,
    # with the budget shared by their numbers of servers; a network with none is kept as is.
    parts = split_by_network(frame, args.init) if args.init else [(None, frame)]
    parts = _networks_with_two(parts, "train", "training", "it is kept unchanged")
    if not parts:
        raise ContractError("unusable training data: no network has 2 servers here")
    budget = args.max_minutes or PRESETS[preset]["max_minutes"]
    servers = sum(part[SERVER].nunique() for _, part in parts)
    out = Path(args.out)
    for sub, part in parts:
        share = part[SERVER].nunique() / servers
        if len(parts) > 1:
            print(
                f"train: {part[SERVER].nunique()} of {servers} servers continue the "
                f"{network_words(sub)} "
                f"({budget * share:.1f} of {budget:g} minutes)",
                file=sys.stderr,
                flush=True,
            )
        model, summary = train(
            part,
            preset=preset,
            seed=args.seed,
            progress=not args.quiet,
            max_minutes=budget * share if len(parts) > 1 else args.max_minutes,
            threads=args.threads,
            incidents=incidents or None,
            # The trainer's defaults unless given (they live with the trainer: no torch import).
            **{
                k: v
                for k, v in (
                    ("incident_share", args.incident_share),
                    ("incident_weight", args.incident_weight),
                )
                if v is not None
            },
            skip_aftermath=args.skip_aftermath,
            level_inputs=args.level_inputs,
            trend_inputs=args.trend_inputs,
            threshold_inputs=args.threshold_inputs,
            incident_head=args.incident_head,
            nofix_head=args.nofix_head,
            naive_mix=args.naive_mix,
            unknown_profile=args.unknown_profile,
            freeze_known_profiles=args.freeze_known_profiles,
            lr_schedule=args.lr_schedule,
            select_by=args.select_by,
            log_loss=args.log_loss,
            average_last=args.average_last,
            horizon_decay=args.horizon_decay,
            timezone=args.timezone,
            init=Path(args.init) / sub if sub else args.init,
            learning_rate=args.learning_rate
            or (PLAIN_FINETUNE_LEARNING_RATE if sub and preset == "finetune" else None),
            max_epochs=args.max_epochs,
        )
        summary["source"] = source
        # Where the servers came from: "seen in training" is decided by this, not by hostnames.
        # A server of a file the generator did not write has seed None.
        names = summary["server_names"]
        summary["server_seeds"] = {s: seeds.get(s) for s in names}
        written = save_bundle(model, out / sub if sub else out, summary)
        kept = summary["averaged_epochs"]
        where = (
            f"the mean of epochs {kept[0]}-{kept[-1]}"
            if kept
            else best_at(summary["best_epoch"] - 1)
        )
        print(
            f"wrote model bundle {written} ({summary['selected_by']} "
            f"{summary['best_' + summary['selected_by']]:.4f} {where}, "
            f"{summary['seconds']:.0f} s)"
        )
    trained = {sub for sub, _ in parts}
    if args.init and (Path(args.init) / PLAIN).is_dir():
        # A network that no server here continued is the parent's, unchanged.
        for kept in {None, PLAIN} - trained:
            where, target = Path(args.init, kept or ""), out / (kept or "")
            target.mkdir(parents=True, exist_ok=True)
            for name in (WEIGHTS, SPEC):
                shutil.copyfile(where / name, target / name)
                (target / name).chmod(0o644)
            print(f"kept the {network_words(kept)} of {args.init} unchanged")
    elif (out / PLAIN).is_dir():
        # An earlier bundle's plain-host network in --out would otherwise serve beside this one.
        shutil.rmtree(out / PLAIN)
        print(f"removed {out / PLAIN}, left there by an earlier bundle")
    return 0


def shipped_alert_rule():
    """Return the shipped LinborgPredictedIncident rules as the scoreboard scores them.

    Per level: (risk at least, quantile index [p50, pessimistic], lead time in seconds); and
    which metrics (in METRIC_NAMES order) may drive the rule.
    """
    import numpy as np

    from linborg.contract import METRIC_NAMES
    from linborg.duration import parse_duration
    from linborg.mixin import CONFIG
    from linborg.trainer.scoreboard import LEVELS

    rule = {
        level: (
            float(CONFIG[f"risk_{level}"]),
            0 if CONFIG[f"{level}_quantile"] == "0.5" else 1,
            parse_duration(CONFIG[f"{level}_lead_time"]),
        )
        for level in LEVELS
    }
    eligible = np.array([m not in CONFIG["incident_ignored_drivers"] for m in METRIC_NAMES])
    return rule, eligible


def tenths_printer(command: str, clock=None):
    """Return a ``progress(stage, done, total)`` that prints one line on stderr each time a pass
    crosses a tenth of its work (and at its end), with the seconds since this was called."""
    import time

    clock = clock or time.monotonic
    start = clock()

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or done * 10 // total != (done - 1) * 10 // total:
            print(
                f"{command}: {stage}: {done}/{total} ({done * 100 // total}%), "
                f"{clock() - start:.0f} s elapsed",
                file=sys.stderr,
                flush=True,
            )

    return progress


def cmd_evaluate(args: argparse.Namespace) -> int:
    from linborg.bundle import load_bundle
    from linborg.contract import SERVER
    from linborg.mixin import CONFIG
    from linborg.trainer.evaluate import evaluate, origin_stride, seen_by_bundle, write_report

    _, note = origin_stride(args.origin_every)
    if note:
        print(f"warning: --origin-every: {note}", file=sys.stderr)
    if args.thresholds:
        from linborg.thresholds import load_thresholds

        load_thresholds(args.thresholds)  # a bad file is refused before the long backtest
    forecaster = load_bundle(args.model)
    frame, source = _load_frame(args)
    metadata = None
    if args.data:
        from linborg.parquet import read_metadata

        metadata = read_metadata(args.data[0])
    labels = metadata.get("incidents") if metadata else None
    servers = sorted(frame[SERVER].astype(str).unique())
    seen, basis = seen_by_bundle(servers, forecaster, metadata)
    result = evaluate(
        forecaster,
        frame,
        labels,
        origin_every_minutes=args.origin_every,
        incident_every_minutes=args.incident_every,
        risk_threshold=args.risk_threshold
        if args.risk_threshold is not None
        else float(CONFIG["risk_warning"]),
        seen_servers=seen,
        seen_basis=basis,
        alert_rule=shipped_alert_rule(),
        thresholds_file=args.thresholds,
        progress=tenths_printer("evaluate"),
    )
    result["summary"]["source"] = source
    path = write_report(result, Path(args.out))
    if args.update_bundle:
        from linborg.bundle import SPEC

        spec_path = Path(args.model) / SPEC
        spec = json.loads(spec_path.read_text())
        spec["evaluation"] = result["summary"]
        spec_path.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    s = result["summary"]
    brief = {k: s[k] for k in ("servers", "servers_seen_in_training", "origins", "targets")}
    if s.get("scoreboard"):
        brief["best"] = {
            fam: {k: b[k] for k in ("detector", "recall_at_budget", "false_per_100_server_days")}
            for fam, b in s["scoreboard"]["best"].items()
        }
        brief["limit_share_precursor_45m"] = s["scoreboard"]["limit_share_precursor_45m"]
    json.dump(brief, sys.stdout, indent=1)
    print(f"\nwrote {path} (the whole summary is in report.json)")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from linborg.bundle import SPEC, load_bundle
    from linborg.trainer.train import recalibrate, split_by_network

    forecaster = load_bundle(args.model)
    timezone = args.timezone or forecaster.spec.get("training", {}).get("timezone") or "UTC"
    frame, source = _load_frame(args)
    # Each network has its own band, fitted on the servers it forecasts (a bundle with a
    # plain-host network: plain hosts for plain/, the profiles' servers for the bundle's own).
    parts = split_by_network(frame, args.model)
    written = 0
    for sub, part in _networks_with_two(parts, "calibrate", "fitting", "its band is kept"):
        where = Path(args.model) / (sub or "")
        network = load_bundle(where) if sub else forecaster
        fitted = recalibrate(network, part, timezone)
        if not fitted["windows"]:
            print(
                f"calibrate: {source} has no whole 8-hour horizon after the validation split of "
                f"any server of the {network_words(sub)}; its band is kept",
                file=sys.stderr,
            )
            continue
        spec_path = where / SPEC
        spec = json.loads(spec_path.read_text())
        spec["interval_calibration"] = {
            k: fitted[k] for k in ("lower", "upper", "windows", "fitted")
        }
        spec.setdefault("training", {})["interval_calibration"] = {
            "windows": fitted["windows"],
            "fitted": fitted["fitted"],
            "source": source,
        }
        tmp = spec_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
        tmp.chmod(0o644)
        tmp.replace(spec_path)  # a running exporter never reads half a file
        written += 1
        print(
            f"calibrated {where} on {fitted['windows']} windows "
            f"of {source} ({len(fitted['fitted'])} metrics fitted): p10-p90 coverage "
            f"{fitted['coverage_before']:.3f} before, {fitted['coverage_after']:.3f} after "
            "(in-sample)"
        )
    return 0 if written else 1


def cmd_calibrate_risk(args: argparse.Namespace) -> int:
    from linborg.bundle import SPEC, load_bundle
    from linborg.parquet import read_metadata, read_metrics
    from linborg.thresholds import load_thresholds
    from linborg.trainer.riskcal import fit, fleet_ceilings

    thresholds = load_thresholds(*([args.thresholds] if args.thresholds else []))
    forecaster = load_bundle(args.model)
    parts = []
    for path in args.data:
        frame, _ = read_metrics(path, allow_missing=True, repair=True)
        labels = read_metadata(path).get("incidents")
        last = [0]

        def progress(done: int, total: int, path=path, last=last) -> None:
            if done == total or done - last[0] >= max(1, total // 10):
                last[0] = done
                print(f"calibrate-risk: {path}: {done}/{total} checks", file=sys.stderr)

        parts.append(fleet_ceilings(forecaster, frame, labels, thresholds, progress))
    fitted = fit(parts, [str(p) for p in args.data])
    fitted["thresholds_file"] = args.thresholds
    if not fitted["healthy_risk"]:
        print(
            "calibrate-risk: no profile has a day of healthy checks in "
            f"{', '.join(args.data)}; nothing written",
            file=sys.stderr,
        )
        return 1
    spec_path = Path(args.model) / SPEC
    spec = json.loads(spec_path.read_text())
    spec["risk_calibration"] = fitted
    tmp = spec_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    tmp.chmod(0o644)
    tmp.replace(spec_path)  # a running exporter never reads half a file
    for prof, row in fitted["healthy_risk"].items():
        top = sorted(row.items(), key=lambda kv: -kv[1])[:3]
        print(
            f"{prof}: {fitted['healthy_checks'][prof]} healthy checks; highest healthy risk "
            + ", ".join(f"{m} {v:.1f}" for m, v in top)
        )
    if fitted["not_fitted"]:
        print(f"not fitted (under a day of healthy checks): {', '.join(fitted['not_fitted'])}")
    print(f"wrote risk_calibration into {spec_path}")
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from linborg.bundle import PLAIN
    from linborg.trainer.blend import blend

    out = blend(args.model, args.other, args.weight, args.out)
    print(
        f"wrote {out}: weights {1 - args.weight:g} x {args.model} + {args.weight:g} x "
        f"{args.other}; fit its band and risk ceilings next (linborg calibrate --model {out} "
        f"--data ..., linborg calibrate-risk --model {out} --data ...)"
    )
    for parent in (args.model, args.other):
        if (Path(parent) / PLAIN).is_dir():
            print(
                f"{parent} has a plain-host network, which the blend does not have (only the "
                f"networks for the profiles' servers are blended): linborg attach-plain --model "
                f"{out} --plain {Path(parent) / PLAIN}"
            )
    return 0


def cmd_attach_plain(args: argparse.Namespace) -> int:
    from linborg.bundle import attach_plain

    out = attach_plain(args.model, args.plain)
    print(
        f"wrote {out}: {args.model} now forecasts plain hosts (profile generic, a hostname of no "
        f"profile's convention) with the network of {args.plain}, every other server with its own"
    )
    return 0


def add_parsers(sub) -> None:
    """Add the training commands (train, calibrate, calibrate-risk, blend, attach-plain,
    evaluate)."""

    def source_args(p):
        p.add_argument(
            "--data",
            action="append",
            metavar="FILE",
            help="Parquet file in the contract schema (train, calibrate: repeat to read several)",
        )
        p.add_argument("--prometheus", help="Prometheus base URL to read history from")
        p.add_argument(
            "--config.file",
            dest="config_file",
            help="read Prometheus as this exporter configuration does: URL (unless "
            "--prometheus), credentials, CA, timeout, queries, labels, hostname patterns",
        )
        p.add_argument("--days", type=float, default=14, help="days of Prometheus history")
        p.add_argument(
            "--holdout-days",
            type=float,
            metavar="N",
            help="the Parquet file's last N days are held out: train and calibrate leave "
            "them out, evaluate scores only them",
        )

    p = sub.add_parser("train", help="train the TFT and write a model bundle")
    source_args(p)
    p.add_argument(
        "--preset",
        help="tiny (tests), default (the shipped model; the default) or finetune "
        "(the default with --init)",
    )
    p.add_argument(
        "--init",
        metavar="BUNDLE",
        help="continue from this model bundle (fine-tuning: its network and weights, a "
        "10-minute budget unless --max-minutes; kept unless an epoch beats it; a bundle with "
        "a plain-host network continues each network on the servers it forecasts; the new "
        "bundle records the lineage)",
    )
    p.add_argument(
        "--timezone",
        default="UTC",
        help="IANA zone of the fleet's business hours (default UTC); serve the bundle with "
        "the same timezone in the exporter's configuration",
    )
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--max-minutes", type=float, help="wall-clock training budget")
    p.add_argument(
        "--max-epochs",
        type=int,
        help="stop after this many epochs (default: the preset's); with a generous "
        "--max-minutes the run does not depend on the machine's speed",
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        help="the optimiser's learning rate (default: the preset's; 0.001 when "
        "fine-tuning a plain-host network)",
    )
    p.add_argument(
        "--incident-share",
        type=float,
        help="share of training batches drawn from windows with an incident under way, when "
        "the data's metadata labels incidents (default 0.3)",
    )
    p.add_argument(
        "--incident-weight",
        type=float,
        help="times the loss of the metric an incident drives counts during the incident, "
        "when the data's metadata labels incidents (default 5)",
    )
    p.add_argument(
        "--skip-aftermath",
        action="store_true",
        help="when the data's metadata labels incidents, leave the incident's metric out of "
        "the loss for 8 h after each incident's end in windows whose origin comes before the "
        "fix (its timing is not in their context)",
    )
    p.add_argument(
        "--level-inputs",
        action="store_true",
        help="the network also sees each window's level and spread in the metrics' units "
        "(added to a bundle given with --init, starting from no effect)",
    )
    p.add_argument(
        "--trend-inputs",
        action="store_true",
        help="each future step also sees where the window's least-squares lines over the last "
        "1 h and 6 h reach by then (added to a bundle given with --init, starting from no "
        "effect)",
    )
    p.add_argument(
        "--naive-mix",
        action="store_true",
        help="each forecast adds last value, the same time yesterday and the 24-hour mean, "
        "weighted per window and step by the network (added to a bundle given with --init, "
        "starting from no effect)",
    )
    p.add_argument(
        "--unknown-profile",
        action="store_true",
        help="the network sees a plain host (profile generic, a hostname of no profile's "
        "convention, such as a real VM) as the profile 'unknown', apart from the generator's "
        "generic servers; thresholds and risk still use generic (kept by a bundle given with "
        "--init that has it)",
    )
    p.add_argument(
        "--freeze-known-profiles",
        action="store_true",
        help="with --init and --unknown-profile: train only the profile 'unknown''s embedding, "
        "so servers of the contract's profiles get the same forecasts as from the --init bundle",
    )
    p.add_argument(
        "--lr-schedule",
        choices=("plateau", "cosine"),
        default="plateau",
        help="plateau: the preset's learning rate, cut when validation stalls, and the run "
        "stops early when it stalls for the preset's patience; cosine: the rate falls along "
        "half a cosine to 2%% of it by the end of the budget (--max-minutes or --max-epochs, "
        "whichever ends first), and the run goes on to that end (default plateau)",
    )
    p.add_argument(
        "--select-by",
        choices=("val_loss", "val_log_loss", "val_naive_ratio"),
        default=None,
        help="what the kept epoch (and, with --init, whether the starting network is kept) is "
        "the lowest of: val_loss, the mean scaled quantile loss of the validation windows, or "
        "val_log_loss, the mean of log(1 + each window's and metric's scaled loss), in which a "
        "burst after a flat day does not decide the mean, or val_naive_ratio, the geometric mean "
        "over series and metrics of the p50's error over the best naive forecast's; all three "
        "are logged (default val_loss; with --init, what the continued network was picked by)",
    )
    p.add_argument(
        "--average-last",
        type=int,
        default=None,
        metavar="N",
        help="keep the mean of the last N epochs' weights (N >= 2) instead of the best epoch's; "
        "with --init only if it beats the starting network (default 0: off; with --init, what "
        "the continued network was trained with)",
    )
    p.add_argument(
        "--log-loss",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train on log(1 + each window's and metric's scaled quantile loss) instead of the "
        "scaled loss, so a burst after a flat day does not decide a batch (val_loss follows; "
        "default off; with --init, what the continued network was trained with)",
    )
    p.add_argument(
        "--horizon-decay",
        type=float,
        default=None,
        metavar="P",
        help="each forecast step j (1 to 96) counts j^-P in the loss, the weights' mean 1: 0 "
        "counts every step alike (the last 4 hours are half the loss), 1 counts each doubling "
        "of the horizon about alike (default 0; with --init, what the continued network was "
        "trained with)",
    )
    p.add_argument(
        "--threshold-inputs",
        action="store_true",
        help="each past step also sees each metric's distance to its warning level, in "
        "warning-to-critical units of the packaged thresholds (added to a bundle given with "
        "--init, starting from no effect)",
    )
    p.add_argument(
        "--incident-head",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="a second training objective, counted WEIGHT times beside the forecasts' loss: the "
        "network's state also tells, per future step and metric, whether an incident is under "
        "way (needs the data's incident labels; the forecasts do not read it; default 0: none)",
    )
    p.add_argument(
        "--nofix-head",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="a second set of quantile outputs trained without the incidents' aftermath (what "
        "a metric does if nobody fixes it), the incident's metric counting WEIGHT times "
        "(needs the data's incident labels; default 0: none)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: the CPUs this process may use: affinity and cgroup quota)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "calibrate",
        help="refit a bundle's p10-p90 band per metric and step on the end of your history "
        "(train does this itself)",
    )
    source_args(p)
    p.add_argument("--model", required=True, help="model bundle directory (rewritten)")
    p.add_argument(
        "--timezone", help="IANA zone of the fleet's business hours (default: the bundle's)"
    )
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "calibrate-risk",
        help="fit a bundle's healthy risk ceilings on fleets it never trained on (the risk "
        "score counts only risk above them)",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="PARQUET",
        help="a fleet the model never trained on (repeatable); its incident labels, if any, "
        "mark the checks that are not healthy",
    )
    p.add_argument("--model", required=True, help="model bundle directory (rewritten)")
    p.add_argument(
        "--thresholds",
        metavar="FILE",
        help="the levels the risk is read against: the packaged thresholds overridden by FILE "
        "(the exporter's thresholds_file; give the same file the exporter serves with)",
    )
    p.set_defaults(func=cmd_calibrate_risk)

    p = sub.add_parser(
        "blend",
        help="interpolate the weights of two bundles of one network (a bundle and its "
        "continuation) into a new bundle",
    )
    p.add_argument("--model", required=True, help="the first bundle (weight 0 gives it)")
    p.add_argument(
        "--other", required=True, help="the second bundle, the same network (weight 1 gives it)"
    )
    p.add_argument(
        "--weight", type=float, default=0.5, help="the second bundle's share, 0-1 (default 0.5)"
    )
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.set_defaults(func=cmd_blend)

    p = sub.add_parser(
        "attach-plain",
        help="give a bundle a plain-host network: servers of profile generic whose hostname "
        "follows no profile's convention (plain VMs) are forecast by the other bundle's network",
    )
    p.add_argument("--model", required=True, help="the bundle to give it to (changed in place)")
    p.add_argument(
        "--plain",
        required=True,
        help="the bundle whose network forecasts plain hosts (copied into the first bundle's "
        "plain/ directory)",
    )
    p.set_defaults(func=cmd_attach_plain)

    p = sub.add_parser("evaluate", help="backtest a model bundle against baselines")
    source_args(p)
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--out", required=True, help="report directory to write")
    p.add_argument(
        "--origin-every",
        type=float,
        default=35,
        help="minutes between forecast origins; the default (35 = 7 steps, co-prime with the "
        "288 steps of a day) forecasts every server from every time of day once a week, a "
        "stride sharing a factor with 288 (e.g. 360) is warned about; a larger one (355) is "
        "faster and noisier",
    )
    p.add_argument(
        "--incident-every",
        type=int,
        default=15,
        help="minutes between the early-warning checks of every detector",
    )
    p.add_argument(
        "--risk-threshold",
        type=float,
        help="a risk threshold reported beside the sweep (default: the shipped alert rules' "
        "risk_warning)",
    )
    p.add_argument(
        "--thresholds",
        metavar="FILE",
        help="score the early-warning detectors against the packaged thresholds overridden by "
        "FILE (the shape of the exporter's thresholds_file)",
    )
    p.add_argument(
        "--update-bundle", action="store_true", help="store the summary in the bundle's JSON"
    )
    p.set_defaults(func=cmd_evaluate)
