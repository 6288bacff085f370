"""The `linborg` command: one entry point, one subcommand per job.

Subcommands import their package only when run, so `linborg --help` stays fast and light.
Errors in the user's input are printed as one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata

from linborg import contract


def _version() -> str:
    try:
        return metadata.version("linborg")
    except metadata.PackageNotFoundError:
        return "unknown"


def cmd_contract(args: argparse.Namespace) -> int:
    """Print the data contract: metrics, profiles, states and thresholds."""
    from linborg.thresholds import load_thresholds

    thresholds = load_thresholds(*args.thresholds)
    doc = contract.describe()
    doc["thresholds"] = thresholds.as_dict()
    if args.json:
        json.dump(doc, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    print(f"LINBORG contract {doc['contract_version']}, step {contract.STEP_SECONDS} s\n")
    print(f"{'metric':<18} {'unit':<22} {'range':<14} meaning")
    for m in contract.METRICS:
        rng = f"[{m.min:g}, {m.max:g}]"
        print(f"{m.name:<18} {m.unit:<22} {rng:<14} {m.help}")
    print(f"\n{'profile':<16} {'hostname pattern':<34} meaning")
    for p in contract.PROFILES:
        print(f"{p.name:<16} {p.hostname_pattern:<34} {p.help}")
    print(f"\nstates (ground truth, never a model input): {', '.join(contract.STATES)}")
    print("\nthresholds, warning/critical (cpu_idle_pct: lower is worse):")
    names = contract.PROFILE_NAMES
    print(f"{'metric':<18} " + " ".join(f"{n:>15}" for n in names))
    for m in contract.METRICS:
        cells = []
        for n in names:
            t = thresholds.get(n, m.name)
            cells.append(f"{t.warning:g}/{t.critical:g}".rjust(15))
        print(f"{m.name:<18} " + " ".join(cells))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a Parquet metrics file against the contract."""
    from linborg.parquet import read_metrics

    frame, doc = read_metrics(args.file, allow_missing=args.allow_missing)
    servers = frame[contract.SERVER].nunique()
    first, last = frame[contract.TIMESTAMP].min(), frame[contract.TIMESTAMP].max()
    print(
        f"{args.file}: valid (contract {doc['contract_version']}, {len(frame)} rows, "
        f"{servers} servers, {first} .. {last})"
    )
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Print the profile inferred for each hostname, with the reason."""
    patterns = contract.DEFAULT_HOSTNAME_PATTERNS
    if args.pattern:
        patterns = [tuple(p.split("=", 1)) if "=" in p else (p,) for p in args.pattern]
    matcher = contract.ProfileMatcher(patterns)
    for name in args.hostname:
        found = matcher.match(name)
        print(f"{name}\t{found.profile}\t{found.reason}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `linborg` command."""
    parser = argparse.ArgumentParser(
        prog="linborg",
        description="Forecast LINBORG server metrics with a Temporal Fusion Transformer "
        "and export forecasts, risk and time to breach to Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"linborg {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("contract", help="print the data contract and thresholds")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument(
        "--thresholds",
        action="append",
        default=[],
        metavar="FILE",
        help="threshold override file (repeatable); see linborg/thresholds.yaml",
    )
    p.set_defaults(func=cmd_contract)

    p = sub.add_parser("validate", help="check a Parquet metrics file against the contract")
    p.add_argument("file", help="Parquet file in the contract's long format")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="accept absent metric columns, NaN samples and whole-step gaps",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("profile", help="infer server profiles from hostnames")
    p.add_argument("hostname", nargs="+")
    p.add_argument(
        "--pattern",
        action="append",
        default=[],
        metavar="REGEX=PROFILE",
        help="hostname pattern to try, in order (repeatable; replaces the defaults)",
    )
    p.set_defaults(func=cmd_profile)

    from generator.cli import add_parser as add_generate

    add_generate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `linborg` command and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except contract.ContractError as err:
        print(f"linborg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
