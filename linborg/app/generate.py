"""`linborg generate ...`: history, backfill, live serving, scenarios and the report."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time

DEFAULT_HISTORY_START = "2026-01-05T00:00:00Z"  # a Monday
DEFAULT_LISTEN = "127.0.0.1:9105"


def _composition(args: argparse.Namespace) -> dict[str, int]:
    from linborg.generator.fleet import DEFAULT_COMPOSITION, parse_composition, scaled_composition

    if args.fleet and args.servers:
        from linborg.contract import ContractError

        raise ContractError("impossible fleet spec: give --fleet or --servers, not both")
    if args.fleet:
        return parse_composition(args.fleet)
    if args.servers:
        return scaled_composition(args.servers)
    return dict(DEFAULT_COMPOSITION)


def _fleet(args: argparse.Namespace):
    from linborg.generator.fleet import build_fleet

    return build_fleet(_composition(args))


def _listen(text: str) -> tuple[str, int]:
    from linborg.contract import ContractError

    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ContractError(f"bad listen address '{text}': use HOST:PORT")
    return host or "0.0.0.0", int(port)


def cmd_history(args: argparse.Namespace) -> int:
    from linborg.generator.output import incidents_path, parse_time, write_history

    fleet = _fleet(args)
    began = time.monotonic()
    path, meta = write_history(
        args.out,
        fleet,
        args.seed,
        parse_time(args.start),
        args.days,
        progress=not args.quiet,
        incident_rate=args.incident_rate,
    )
    print(
        f"wrote {path} ({len(fleet)} servers x {args.days:g} days, "
        f"{len(meta['incidents'])} incidents labelled in {incidents_path(path)}) "
        f"in {time.monotonic() - began:.1f}s"
    )
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from linborg.generator.live import default_origin
    from linborg.generator.output import parse_time, write_openmetrics

    now = dt.datetime.now(dt.UTC)
    start = parse_time(args.start) if args.start else default_origin(now)
    end = parse_time(args.end)
    path, steps = write_openmetrics(args.out, _fleet(args), args.seed, start, end, args.job)
    print(f"wrote {path}: {steps} steps from {start:%Y-%m-%dT%H:%M}Z to {end:%Y-%m-%dT%H:%M}Z")
    print(f"load it with: promtool tsdb create-blocks-from openmetrics {path} DATA_DIR")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from linborg.generator.live import LiveFleet, default_origin, serve
    from linborg.generator.output import parse_time, write_openmetrics

    host, port = _listen(args.listen)
    fleet = _fleet(args)
    now = dt.datetime.now(dt.UTC)
    origin = parse_time(args.start) if args.start else default_origin(now)
    live = LiveFleet(fleet, args.seed, origin)
    if args.backfill:
        path, steps = write_openmetrics(
            args.backfill, fleet, args.seed, origin, live.step_time, args.job
        )
        print(f"wrote backfill {path} ({steps} steps up to {live.step_time:%H:%M}Z)", flush=True)
    httpd = serve(live, host, port)
    print(
        f"serving {len(fleet)} servers on http://{host}:{httpd.server_address[1]}/metrics "
        f"(seed {args.seed}, process started {origin:%Y-%m-%dT%H:%M}Z)",
        flush=True,
    )
    try:
        while True:
            time.sleep(5)
            live.refresh()
    except KeyboardInterrupt:
        httpd.shutdown()
    return 0


def cmd_scenario(args: argparse.Namespace) -> int:
    import requests

    from linborg.contract import ContractError

    request: dict = {"scenario": args.scenario}
    if args.server:
        request["servers"] = args.server
    elif args.profile:
        request["profile"] = args.profile
    else:
        request["fleet"] = True
    for key in ("incident", "precursor_minutes", "duration_minutes"):
        if getattr(args, key) is not None:
            request[key] = getattr(args, key)
    try:
        resp = requests.post(args.url.rstrip("/") + "/scenario", json=request, timeout=10)
    except requests.RequestException as err:
        raise ContractError(f"cannot reach the generator at {args.url}: {err}") from None
    if resp.status_code != 200:
        raise ContractError(resp.json().get("error", resp.text))
    json.dump(resp.json(), sys.stdout, indent=1)
    print()
    return 0


def cmd_heldout(args: argparse.Namespace) -> int:
    from linborg.generator.output import parse_time, write_heldout

    composition = None
    if args.fleet or args.servers:
        composition = _composition(args)
    start = parse_time(args.start) if args.start else None
    if start is not None and args.seed == args.train_seed:
        from linborg.contract import ContractError

        raise ContractError(
            f"--seed {args.seed} is the training seed: a held-out fleet needs a seed never used "
            "in training"
        )
    path, meta = write_heldout(
        args.out,
        args.train_seed,
        parse_time(args.train_start),
        args.train_days,
        args.days,
        args.seed,
        composition=composition,
        start=start,
    )
    with_pre = sum(1 for i in meta["incidents"] if i["has_precursor"])
    who = (
        f"seed {args.seed}, none seen in training"
        if start is not None
        else "half seen in training, half new"
    )
    print(
        f"wrote {path}: {meta['servers']} servers ({who}) x {args.days:g} days from "
        f"{meta['start']}, {len(meta['incidents'])} incidents ({with_pre} with a precursor)"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from linborg.generator.report import write_report

    path = write_report(args.out, args.seed, days=args.days)
    print(f"wrote {path}")
    return 0


def add_parser(sub) -> None:
    """Add `generate` and its subcommands to the `linborg` parser."""
    gen = sub.add_parser("generate", help="synthetic fleet: history, backfill, live endpoint")
    gsub = gen.add_subparsers(dest="generate_command", metavar="WHAT", required=True)

    def fleet_args(p):
        p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
        p.add_argument(
            "--fleet",
            metavar="SPEC",
            help="composition, e.g. web_api=25,database=15 (default: the 90-server fleet)",
        )
        p.add_argument(
            "--servers", type=int, metavar="N", help="the default mix scaled to N servers"
        )

    p = gsub.add_parser("history", help="write Parquet history with incident labels")
    fleet_args(p)
    p.add_argument("--out", required=True, help="Parquet file to write")
    p.add_argument("--days", type=float, default=30, help="days of history (default 30)")
    p.add_argument(
        "--start",
        default=DEFAULT_HISTORY_START,
        help=f"first timestamp, ISO-8601 or now-30d (default {DEFAULT_HISTORY_START})",
    )
    p.add_argument(
        "--incident-rate",
        type=float,
        default=1.0,
        metavar="X",
        help="multiply every profile's random incidents per day by X, 0 to 10 (default 1; "
        "the shipped model trains on 3 to see more precursor ramps)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_history)

    p = gsub.add_parser("backfill", help="write OpenMetrics for promtool tsdb create-blocks")
    fleet_args(p)
    p.add_argument("--out", required=True, help="OpenMetrics file to write")
    p.add_argument(
        "--start", help="first timestamp (default: midnight UTC of the day 24 hours ago)"
    )
    p.add_argument("--end", default="now", help="last timestamp (default now)")
    p.add_argument("--job", default="linborg-generator", help="job label to add")
    p.set_defaults(func=cmd_backfill)

    p = gsub.add_parser("serve", help="serve the fleet's metrics live, with scenario control")
    fleet_args(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT (default {DEFAULT_LISTEN})")
    p.add_argument("--start", help="process origin (default: midnight UTC of the day 24 hours ago)")
    p.add_argument("--backfill", metavar="FILE", help="first write history up to now to FILE")
    p.add_argument("--job", default="linborg-generator", help="job label in the backfill")
    p.set_defaults(func=cmd_serve)

    p = gsub.add_parser("scenario", help="change servers of a running generator")
    p.add_argument("--url", default=f"http://{DEFAULT_LISTEN}", help="generator base URL")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--server", action="append", help="server name (repeatable)")
    target.add_argument("--profile", help="every server of this profile")
    p.add_argument("scenario", help="healthy, degrading or critical")
    p.add_argument("--incident", help="incident type (default: one typical of the profile)")
    p.add_argument("--precursor-minutes", type=int, dest="precursor_minutes")
    p.add_argument("--duration-minutes", type=int, dest="duration_minutes")
    p.set_defaults(func=cmd_scenario)

    p = gsub.add_parser("heldout", help="write a held-out evaluation set after a training history")
    p.add_argument("--out", required=True, help="Parquet file to write")
    p.add_argument("--train-seed", type=int, default=7, help="seed of the training history")
    p.add_argument("--train-start", default=DEFAULT_HISTORY_START, help="its first timestamp")
    p.add_argument("--train-days", type=float, default=30, help="its length in days")
    p.add_argument("--days", type=float, default=7, help="days of held-out data")
    p.add_argument("--seed", type=int, default=8, help="seed of the unseen servers")
    p.add_argument(
        "--fleet",
        metavar="SPEC",
        help="composition of the held-out fleet, e.g. web_api=30,database=20 "
        "(default: the 90-server fleet)",
    )
    p.add_argument("--servers", type=int, metavar="N", help="the default mix scaled to N servers")
    p.add_argument(
        "--start",
        help="a fresh fleet (--seed, --fleet) from this timestamp, none of it seen in training "
        "(default: continue the training fleet after its window, plus a new fleet)",
    )
    p.set_defaults(func=cmd_heldout)

    p = gsub.add_parser(
        "report",
        help="write the report of daily profiles, incidents and healthy servers past warning",
    )
    p.add_argument("--out", default="docs/generator-report", help="folder to write")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=float, default=14)
    p.set_defaults(func=cmd_report)
