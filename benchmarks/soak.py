"""Soak the exporter: many cycles in one process; does its memory or its file count grow?

The real exporter cycle (pull, window, the shipped model's batched inference, risk, snapshot,
rendering /metrics, saving state_file) runs --cycles times back to back against the fake
query API of exporter_bench.py, with one gzip scrape over HTTP after each. After every cycle
the process's RSS (VmRSS) and open file descriptors are sampled, and RSS again after
gc.collect() and glibc's malloc_trim(0) (the memory in use: right after a cycle VmRSS swings by
tens of MiB with the batch's shape, as glibc keeps freed inference buffers). The least-squares
slope of each per 100 cycles, the first --warmup cycles left out, is the leak figure; the gate
reads the trimmed RSS (--no-trim: VmRSS as it is, and no trimming).

The clock advances --minutes-per-cycle simulated minutes a cycle (30 by default: each cycle
then fetches 8 steps per series instead of 3). Every --churn-every cycles --churn-fraction of
the servers stop reporting and as many new ones start; a server that left ages out of the
24-hour window 24 simulated hours later (48 cycles at 30 minutes), so the soak sees its memory
released. At --minutes-per-cycle 5 (the default interval) nothing ages out within 288 cycles.

Writes soak.json, soak.md and soak.png to --out; exits 1 if a slope is over its tolerance or
a cycle failed, so it can gate a change.

Run: .venv/bin/python benchmarks/soak.py --servers 1000 --cycles 200 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import requests
from benchlib import (
    aligned_now,
    churn_schedule,
    exit_on_sigterm,
    fake_prometheus,
    open_fds,
    rss_bytes,
    slope_per_100,
    trimmed_rss_bytes,
)

from linborg.bundle import load_bundle
from linborg.contract import STEP_SECONDS
from linborg.exporter.collector import MetricsPage
from linborg.exporter.config import config_from_dict
from linborg.exporter.cycle import Exporter
from linborg.exporter.server import make_handler
from linborg.prom import PrometheusClient
from linborg.thresholds import load_thresholds

MIB = 1024**2
DAY_SECONDS = 86400
#: Cycles left out of the slopes when there is no churn: the first fill and the first few
#: cycles allocate what every later cycle reuses.
WARMUP_CYCLES = 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument(
        "--warmup",
        type=int,
        help="cycles left out of the slopes (default: 10, and with churn until the first "
        "servers that left have aged out of the window: 68 cycles at the other defaults)",
    )
    parser.add_argument("--minutes-per-cycle", type=int, default=30, help="a multiple of 5")
    parser.add_argument("--churn-every", type=int, default=20, metavar="CYCLES")
    parser.add_argument("--churn-fraction", type=float, default=0.05, help="0: no churn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="models/default")
    parser.add_argument(
        "--state-file",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="save the window after every cycle, as deployments do (default: yes)",
    )
    parser.add_argument("--scrape", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--trim",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gate on RSS after gc and malloc_trim (default: yes)",
    )
    parser.add_argument("--max-rss-slope", type=float, default=5.0, help="MiB per 100 cycles")
    parser.add_argument("--max-fd-slope", type=float, default=1.0, help="fds per 100 cycles")
    parser.add_argument("--progress", type=int, default=10, help="a line every N cycles")
    parser.add_argument("--out", type=Path, required=True, help="folder for the reports")
    args = parser.parse_args(argv)
    if args.minutes_per_cycle < 5 or args.minutes_per_cycle % 5:
        parser.error("--minutes-per-cycle must be a positive multiple of 5")
    if args.warmup is None:
        args.warmup = default_warmup(args)
        if args.cycles < args.warmup + 2:
            short = args.cycles // 2
            print(
                f"soak: warning: {args.cycles} cycles are too few for the warm-up of "
                f"{args.warmup} that churn needs; left out: {short}, so the slopes include "
                "the window's growth by design",
                flush=True,
            )
            args.warmup = short
    if args.cycles < args.warmup + 2:
        parser.error(
            f"--cycles must be at least the warm-up + 2 ({args.warmup + 2}); or set --warmup"
        )
    return args


def default_warmup(args: argparse.Namespace) -> int:
    """Return the cycles before the soak's memory is in its steady state.

    Without churn, 10. With churn, until the servers that left at the first event have aged
    out of the 24-hour window: from then on the window holds about as many servers as leave
    in a day, and the servers that joined then are forecast (min_history, 24 hours, too).
    Before that the window grows by design, which is not a leak.
    """
    if round(args.servers * args.churn_fraction) == 0 or args.churn_every >= args.cycles:
        return WARMUP_CYCLES  # no churn in this run
    return args.churn_every + -(-DAY_SECONDS // (args.minutes_per_cycle * 60))


def scrape(url: str, threads: int) -> tuple[float, int]:
    """GET /metrics gzip-compressed on a new connection; return (seconds, bytes on the wire).

    Returns once the server's thread for the connection has ended (``threads``: the Python
    threads before), so its socket is closed before file descriptors are counted.
    """
    began = time.perf_counter()
    with requests.get(url, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=60) as r:
        r.raise_for_status()
        body = r.raw.read(decode_content=False)
    took = time.perf_counter() - began
    deadline = time.monotonic() + 10
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.01)
    return took, len(body)


def soak(args: argparse.Namespace, workdir: Path) -> dict:
    """Run the cycles; return the per-cycle samples and the churn events."""
    import torch

    torch.set_num_threads(args.threads)
    end = aligned_now()
    t0 = end.timestamp() - 3600 + 30  # the first cycle fills 24 h, the rest are steady
    times = [t0 + c * args.minutes_per_cycle * 60 for c in range(args.cycles)]
    per_event = round(args.servers * args.churn_fraction)
    events = list(range(args.churn_every, args.cycles, args.churn_every)) if per_event else []
    membership = None
    if events:
        steps = [int(times[c] // STEP_SECONDS) for c in events]
        membership = churn_schedule(args.servers, per_event, steps)
    samples = []
    with fake_prometheus(args.servers, end, membership=membership) as api_url:
        settings = {"threads": args.threads, "model": {"bundle": args.model}}
        if args.state_file:
            settings["state_file"] = str(workdir / "window.npz")
        cfg = config_from_dict(settings)
        client = PrometheusClient(api_url, timeout=600)
        exp = Exporter(cfg, client, load_bundle(cfg.model_bundle), load_thresholds())
        clock = {"now": times[0]}
        page = MetricsPage(exp, clock=lambda: clock["now"])
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(page, lambda: (True, "ok")))
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        metrics_url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
        threads = threading.active_count()
        print(
            f"soak: {args.servers} servers, {args.cycles} cycles of {args.minutes_per_cycle} "
            f"simulated minutes, "
            + (
                f"{per_event} servers churned at each of {len(events)} events"
                if events
                else "no churn"
            ),
            flush=True,
        )
        try:
            for c, now in enumerate(times):
                clock["now"] = now
                began = time.perf_counter()
                snap = exp.run_once(now)
                page.prepare()
                took = time.perf_counter() - began
                scraped = scrape(metrics_url, threads) if args.scrape else (0.0, 0)
                sample = {
                    "cycle": c,
                    "seconds": took,
                    "pull_seconds": exp.stats.last_pull_seconds,
                    "ok": snap is not None,
                    "rss_bytes": rss_bytes(),
                    "fds": open_fds(),
                    "trimmed_rss_bytes": trimmed_rss_bytes() if args.trim else None,
                    "servers_in_window": len(exp.window.servers) if exp.window else 0,
                    "servers_forecast": len(snap.servers) if snap else 0,
                    "servers_not_forecast": len(snap.not_forecast) if snap else 0,
                    "scrape_seconds": scraped[0],
                    "scrape_bytes": scraped[1],
                }
                samples.append(sample)
                if c == 0 or (c + 1) % args.progress == 0 or c + 1 == args.cycles:
                    print(
                        f"cycle {c + 1}/{args.cycles}: {took:.2f} s, RSS "
                        f"{sample['rss_bytes'] / MIB:.1f} MiB"
                        + (
                            f" ({sample['trimmed_rss_bytes'] / MIB:.1f} trimmed)"
                            if sample["trimmed_rss_bytes"]
                            else ""
                        )
                        + f", {sample['fds']} fds, "
                        f"{sample['servers_forecast']} forecast, "
                        f"{sample['servers_not_forecast']} not, "
                        f"{sample['servers_in_window']} in the window"
                        + ("" if sample["ok"] else " (cycle FAILED)"),
                        flush=True,
                    )
        finally:
            httpd.shutdown()
            httpd.server_close()
    return {"samples": samples, "churn_cycles": events, "churned_per_event": per_event}


def summarize(args: argparse.Namespace, run: dict) -> dict:
    """Return the slopes, first and last values, medians and the gate's verdict."""
    s = run["samples"]
    steady = [x["seconds"] for x in s[args.warmup :]]
    window = [x["servers_in_window"] for x in s]

    def trend(values: list, tolerance: float | None) -> dict:
        return {
            "first": values[0],
            "last": values[-1],
            "max": max(values),
            "slope_per_100_cycles": slope_per_100(values, args.warmup),
            "tolerance": tolerance,
        }

    trimmed = all(x["trimmed_rss_bytes"] for x in s)
    rss = [x["rss_bytes"] / MIB for x in s]
    out = {
        # The gate reads one RSS: trimmed where it was sampled, else VmRSS as it was.
        "rss_mib": trend(rss, None if trimmed else args.max_rss_slope),
        "trimmed_rss_mib": (
            trend([x["trimmed_rss_bytes"] / MIB for x in s], args.max_rss_slope)
            if trimmed
            else None
        ),
        "fds": trend([x["fds"] for x in s], args.max_fd_slope),
        "first_cycle_seconds": s[0]["seconds"],
        "median_cycle_seconds": float(np.median(steady)),
        "median_scrape_seconds": float(np.median([x["scrape_seconds"] for x in s])),
        "servers_in_window": {"first": window[0], "max": max(window), "last": window[-1]},
        # Each batch size the model first meets costs memory for good (oneDNN's primitive
        # cache, about 0.6 MiB a size): with churn, this many sizes were met.
        "distinct_batch_sizes": len({x["servers_forecast"] for x in s if x["ok"]}),
        "failed_cycles": [x["cycle"] for x in s if not x["ok"]],
    }
    gated = (
        ("RSS (MiB)", out["rss_mib"]),
        ("trimmed RSS (MiB)", out["trimmed_rss_mib"]),
        ("open fds", out["fds"]),
    )
    problems = [
        f"{name} grows {v['slope_per_100_cycles']:.2f} per 100 cycles (tolerance "
        f"{v['tolerance']:g})"
        for name, v in gated
        if v and v["tolerance"] is not None and v["slope_per_100_cycles"] > v["tolerance"]
    ]
    if out["failed_cycles"]:
        problems.append(f"cycles failed: {out['failed_cycles']}")
    out["problems"] = problems
    out["passed"] = not problems
    return out


def write_reports(args: argparse.Namespace, run: dict, summary: dict, command: str) -> None:
    """Write soak.json, soak.md and soak.png into args.out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    doc = {"command": command, "settings": settings, "summary": summary, **run}
    (out / "soak.json").write_text(json.dumps(doc, indent=1) + "\n")

    s = run["samples"]
    x = np.array([v["cycle"] for v in s])
    w = args.warmup
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    panels = [
        [("VmRSS", np.array([v["rss_bytes"] for v in s]) / MIB)],
        [("open", np.array([v["fds"] for v in s], float))],
        [("pull, window, inference, risk, render", np.array([v["seconds"] for v in s]))],
    ]
    if summary["trimmed_rss_mib"]:
        panels[0].append(("after gc and malloc_trim", [v["trimmed_rss_bytes"] / MIB for v in s]))
    labels = ("RSS (MiB)", "file descriptors", "cycle (s)")
    for ax, lines, label in zip(axes, panels, labels, strict=False):
        for name, y in lines:
            y = np.asarray(y, float)
            (line,) = ax.plot(x, y, lw=1, label=name)
            if label != "cycle (s)":
                k, b = np.polyfit(x[w:], y[w:], 1)
                ax.plot(
                    x[w:],
                    k * x[w:] + b,
                    "--",
                    lw=1,
                    color=line.get_color(),
                    label=f"fit: {k * 100:+.2f} per 100 cycles",
                )
        ax.legend(loc="upper left", fontsize="small")
        ax.set_ylabel(label)
    ax = axes[3]
    ax.plot(x, [v["servers_in_window"] for v in s], lw=1, label="in the window")
    ax.plot(x, [v["servers_forecast"] for v in s], lw=1, label="forecast")
    ax.set_ylabel("servers")
    ax.legend(loc="upper left")
    ax.set_xlabel("cycle")
    for ax in axes:
        ax.axvspan(0, w, color="0.9")
        for c in run["churn_cycles"]:
            ax.axvline(c, color="0.7", lw=0.5, ls=":")
    fig.suptitle(
        f"soak: {args.servers} servers, {args.cycles} cycles "
        f"(grey: warm-up; dotted: churn of {run['churned_per_event']} servers)"
    )
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=80)
    plt.close(fig)

    win = summary["servers_in_window"]

    def row(name: str, v: dict | None, fmt: str) -> str:
        if v is None:
            return f"| {name} | not sampled (--no-trim or no glibc) | | | | |"
        tol = "not gated" if v["tolerance"] is None else f"{v['tolerance']:g}"
        return (
            f"| {name} | {v['first']:{fmt}} | {v['last']:{fmt}} | {v['max']:{fmt}} | "
            f"{v['slope_per_100_cycles']:+.2f} | {tol} |"
        )

    lines = [
        f"# Soak: {args.servers} servers, {args.cycles} cycles",
        "",
        f"`{command}`",
        "",
        f"Verdict: **{'pass' if summary['passed'] else 'FAIL'}**"
        + "".join(f"; {p}" for p in summary["problems"]),
        "",
        f"| | first | last | max | slope per 100 cycles (after {w} cycles) | tolerance |",
        "|---|---|---|---|---|---|",
        row("VmRSS after the cycle (MiB)", summary["rss_mib"], ".1f"),
        row("RSS after gc and malloc_trim (MiB)", summary["trimmed_rss_mib"], ".1f"),
        row("open file descriptors", summary["fds"], "d"),
        "",
        f"Cycle: first (24-hour fill) {summary['first_cycle_seconds']:.2f} s, median after the "
        f"warm-up {summary['median_cycle_seconds']:.2f} s; median scrape "
        f"{summary['median_scrape_seconds']:.3f} s. Servers in the window: {win['first']} "
        f"first, {win['max']} at most, {win['last']} last ({run['churned_per_event']} churned "
        f"at each of {len(run['churn_cycles'])} events, {args.minutes_per_cycle} simulated "
        f"minutes a cycle); {summary['distinct_batch_sizes']} distinct batch sizes.",
        "",
        "![RSS, open file descriptors, cycle time and servers per cycle](soak.png)",
        "",
    ]
    (out / "soak.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    command = shlex.join(["benchmarks/soak.py", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory() as tmp:
        run = soak(args, Path(tmp))
    summary = summarize(args, run)
    write_reports(args, run, summary, command)
    r, t, f = summary["rss_mib"], summary["trimmed_rss_mib"], summary["fds"]
    trimmed = (
        f"; trimmed {t['first']:.1f} -> {t['last']:.1f} MiB, "
        f"{t['slope_per_100_cycles']:+.2f} per 100 cycles"
        if t
        else ""
    )
    print(
        f"soak: VmRSS {r['first']:.1f} -> {r['last']:.1f} MiB, "
        f"{r['slope_per_100_cycles']:+.2f} per 100 cycles{trimmed} (tolerance "
        f"{args.max_rss_slope:g}); fds {f['first']} -> {f['last']}, "
        f"{f['slope_per_100_cycles']:+.2f} per 100 cycles (tolerance {f['tolerance']:g}); "
        f"median cycle {summary['median_cycle_seconds']:.2f} s after {args.warmup} warm-up "
        f"cycles; reports in {args.out}",
        flush=True,
    )
    if summary["passed"]:
        print("soak: PASS", flush=True)
        return 0
    print("soak: FAIL: " + "; ".join(summary["problems"]), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
