"""Benchmark the exporter: steady-state cycle time, memory, scrape time and bytes per cycle.

A small HTTP server on loopback answers Prometheus' query_range API (JSON, as Prometheus
formats it) from a simulated fleet, so the exporter's client, parsing, window, batched TFT
inference, risk and snapshot all run for real. The model is the shipped default bundle.

Run: .venv/bin/python benchmarks/exporter_bench.py --servers 90 1000 10000
     .venv/bin/python benchmarks/exporter_bench.py --servers 1000 --hog 2   # beside 2 CPU hogs
     .venv/bin/python benchmarks/exporter_bench.py --servers 1000 --restart  # restart-to-fresh
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import resource
import shutil
import statistics
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import requests
from benchlib import aligned_now, cpu_hogs, exit_on_sigterm, fake_prometheus

from linborg.bundle import load_bundle
from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.exporter.collector import MetricsPage
from linborg.exporter.config import config_from_dict
from linborg.exporter.cycle import Exporter
from linborg.exporter.server import make_handler
from linborg.prom import PrometheusClient
from linborg.thresholds import load_thresholds

#: Cycles a start may take to fill its window before the benchmark gives up on it.
MAX_START_CYCLES = 5


def steady_cycles(exp: Exporter, page: MetricsPage, clock: dict, cycles: int) -> dict:
    """Run ``cycles`` cycles one step apart, each rendered as the scheduler does; return times."""
    out = {"cycle": [], "pull": [], "render": [], "bytes": [], "threads": []}
    for _ in range(cycles):
        before = exp.stats.bytes_received
        clock["now"] += STEP_SECONDS
        began = time.perf_counter()
        if exp.run_once(clock["now"]) is None:
            raise RuntimeError(f"a steady cycle failed at {clock['now']}")
        ran = time.perf_counter()
        page.prepare()
        out["cycle"].append(time.perf_counter() - began)
        out["render"].append(time.perf_counter() - ran)
        out["pull"].append(exp.stats.last_pull_seconds)
        out["bytes"].append(exp.stats.bytes_received - before)
        out["threads"].append(exp.stats.inference_threads)
    return out


def bench(n: int, threads, scrapes: int, cycles: int, hog: int) -> None:
    import torch

    cfg = config_from_dict({"threads": threads})
    torch.set_num_threads(cfg.threads)
    end = aligned_now()
    # The fake query API runs in its own process so that RSS below is the exporter's alone.
    with fake_prometheus(n, end) as url:
        client = PrometheusClient(url, timeout=600)
        exp = Exporter(cfg, client, load_bundle("models/default"), load_thresholds())
        clock = {"now": end.timestamp() - 3600 + 30}  # the first cycle fills 24 h; then steady
        page = MetricsPage(exp, clock=lambda: clock["now"])
        began = time.perf_counter()
        exp.run_once(clock["now"])
        fill_cycles = 1
        # A fill cut short by cycle_deadline goes on in the next cycles; steady ones come after.
        while len(exp.fetched_until) < len(METRIC_NAMES) and fill_cycles < MAX_START_CYCLES:
            clock["now"] += STEP_SECONDS
            exp.run_once(clock["now"])
            fill_cycles += 1
        page.prepare()
        first = time.perf_counter() - began
        first_bytes = exp.stats.bytes_received
        if fill_cycles > 1:
            print(
                f"{n:>6} servers: cycle_deadline cut the 24-hour fill into {fill_cycles} cycles "
                "(timed together as the first cycle below)",
                flush=True,
            )
        quiet = steady_cycles(exp, page, clock, cycles)
        hogged = None
        if hog:
            print(f"{n:>6} servers: {cycles} more steady cycles beside {hog} CPU hogs", flush=True)
            with cpu_hogs(hog):
                hogged = steady_cycles(exp, page, clock, cycles)
        clock["now"] += 30
        # Scrapes over HTTP through the exporter's own handler, as Prometheus does them (gzip),
        # and plain; the time is until the client holds the whole body as sent.
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(page, lambda: (True, "ok")))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
        times = {"gzip": [], "identity": []}
        sizes_by: dict[str, int] = {}
        with requests.Session() as session:
            for _ in range(scrapes):
                for encoding, took in times.items():
                    began = time.perf_counter()
                    resp = session.get(url, headers={"Accept-Encoding": encoding}, stream=True)
                    body = resp.raw.read(decode_content=False)
                    took.append(time.perf_counter() - began)
                    sizes_by[encoding] = len(body)
        httpd.shutdown()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        text = page.render()
    size = len(text)
    lines = text.count(b"\n")
    med = {k: float(np.median(v)) for k, v in quiet.items()}
    print(
        f"{n:>6} servers: first cycle {first:.1f} s ({first_bytes / 1e6:.1f} MB); steady cycle "
        f"median {med['cycle']:.2f} s (pull {med['pull']:.2f} s, render "
        f"{med['render']:.2f} s) over {cycles}, {med['bytes'] / 1e6:.2f} MB from Prometheus per "
        f"cycle; scrape over HTTP max {max(times['gzip']):.3f} s gzip "
        f"({sizes_by['gzip'] / 1e6:.1f} MB), {max(times['identity']):.3f} s plain "
        f"({size / 1e6:.1f} MB, {lines / 1e6:.2f}M lines) over {scrapes}; peak RSS during "
        f"the cycles and scrapes {rss:.2f} GiB",
        flush=True,
    )
    if hogged is not None:
        busy = float(np.median(hogged["cycle"]))
        print(
            f"{n:>6} servers: steady cycle beside {hog} CPU hogs median {busy:.2f} s (pull "
            f"{np.median(hogged['pull']):.2f} s, render {np.median(hogged['render']):.2f} s) "
            f"over {cycles}, inference threads {hogged['threads']} (quiet {quiet['threads']}): "
            f"{busy / med['cycle']:.2f}x the quiet {med['cycle']:.2f} s",
            flush=True,
        )


def first_fresh(cfg, url: str, now: float) -> dict:
    """Start an exporter as main.py does and time it until /metrics holds fresh forecasts.

    The clock starts before the model bundle is read (timed_start adds the process start and
    imports). A fill cut short by cycle_deadline goes on in the next cycle, run here straight
    away (a deployment waits one interval for it).
    """
    began = time.perf_counter()
    model = load_bundle(cfg.model_bundle)
    loaded = time.perf_counter()
    exp = Exporter(cfg, PrometheusClient(url, timeout=600), model, load_thresholds())
    restored = exp.restore(now)
    restored_at = time.perf_counter()
    cycles = 0
    while True:
        snap = exp.run_once(now + cycles * cfg.interval_seconds)
        cycles += 1
        if snap is None:
            raise RuntimeError("a cycle after the start failed")
        waiting = sum(r == "incomplete_fill" for _, r in snap.not_forecast.values())
        if not waiting or cycles == MAX_START_CYCLES:
            break
    ran = time.perf_counter()
    MetricsPage(exp, clock=lambda: snap.time).prepare()
    done = time.perf_counter()
    return {
        "total": done - began,
        "model": loaded - began,
        "restore": restored_at - loaded,
        "cycle": ran - restored_at,
        "cycles": cycles,
        "render": done - ran,
        "restored": restored,
        "forecast": len(snap.servers),
        "waiting": waiting,
        "bytes": exp.stats.bytes_received,
    }


def _start(cfg, url: str, now: float, conn) -> None:
    """Child process: one start (first_fresh); send its timings, or why it failed, back."""
    try:
        import torch

        torch.set_num_threads(cfg.threads)
        conn.send(first_fresh(cfg, url, now))
    except BaseException as err:
        conn.send({"error": f"{type(err).__name__}: {err}"})
        raise


def timed_start(cfg, url: str, now: float) -> dict:
    """Run first_fresh in a new Python process; add "process", the seconds from its start.

    A fresh process, as a restarted exporter is: imports, the model's first inference and the
    allocator start cold, not warmed by the starts timed before it.
    """
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_start, args=(cfg, url, now, child))
    began = time.perf_counter()
    proc.start()
    child.close()  # so that a child that dies ends the wait below
    try:
        result = parent.recv()
        result["process"] = time.perf_counter() - began
    except EOFError:
        raise RuntimeError(f"the timed start died (exit code {proc.exitcode})") from None
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if "error" in result:
        raise RuntimeError(f"the timed start failed: {result['error']}")
    return result


def restart(n: int, threads, repeat: int, downtime_minutes: int) -> None:
    """Time a start with a saved window (state_file) against one that fills 24 hours."""
    import torch

    torch.set_num_threads(config_from_dict({"threads": threads}).threads)
    end = aligned_now()
    now = end.timestamp() - 3600 + 30
    saved_at = now - downtime_minutes * 60
    with fake_prometheus(n, end) as url, tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp) / "seed.npz"
        cfg = config_from_dict({"threads": threads})
        # The window as an exporter that ran until ``downtime`` before the restart left it.
        exp = Exporter(
            dataclasses.replace(cfg, state_file=str(seed)),
            PrometheusClient(url, timeout=600),
            load_bundle(cfg.model_bundle),
            load_thresholds(),
        )
        for _ in range(MAX_START_CYCLES):  # a fill cut short by cycle_deadline goes on
            if exp.run_once(saved_at) is None:
                raise RuntimeError("the cycle that writes the saved window failed")
            if len(exp.fetched_until) == len(METRIC_NAMES):
                break
        else:
            raise RuntimeError(f"the window was not filled in {MAX_START_CYCLES} cycles")
        began = time.perf_counter()
        exp.persist()
        save = time.perf_counter() - began
        del exp
        print(
            f"{n:>6} servers: saved window {seed.stat().st_size / 1e6:.1f} MB, written in "
            f"{save:.2f} s (after every cycle when state_file is set); restarting "
            f"{downtime_minutes} min later",
            flush=True,
        )
        runs: dict[str, list[dict]] = {"with state_file": [], "without (24 h fill)": []}
        for k in range(repeat):
            state = Path(tmp) / f"window-{k}.npz"
            shutil.copy(seed, state)  # each start reads the same saved window
            warm = timed_start(dataclasses.replace(cfg, state_file=str(state)), url, now)
            if not warm["restored"]:
                raise RuntimeError("the saved window was not restored")
            cold = timed_start(cfg, url, now)
            for name, r in (("with state_file", warm), ("without (24 h fill)", cold)):
                runs[name].append(r)
                print(
                    f"{n:>6} servers, start {k + 1}/{repeat} {name}: fresh forecasts "
                    f"{r['process']:.2f} s after the process started (start and imports "
                    f"{r['process'] - r['total']:.2f} s, model {r['model']:.2f} s, restore "
                    f"{r['restore']:.2f} s, {r['cycles']} cycle(s) {r['cycle']:.2f} s, render "
                    f"{r['render']:.2f} s; {r['bytes'] / 1e6:.1f} MB from Prometheus; "
                    f"{r['forecast']} forecast, {r['waiting']} waiting for the fill)",
                    flush=True,
                )
    med = {
        (name, key): statistics.median(r[key] for r in rs)
        for name, rs in runs.items()
        for key in ("process", "total")
    }
    warm, cold = med["with state_file", "process"], med["without (24 h fill)", "process"]
    print(
        f"{n:>6} servers: restart to fresh forecasts, median of {repeat}, from the process "
        f"start: {warm:.2f} s with state_file, {cold:.2f} s without ({cold / warm:.1f}x); "
        f"from reading the model: {med['with state_file', 'total']:.2f} s and "
        f"{med['without (24 h fill)', 'total']:.2f} s; {downtime_minutes} min down",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", type=int, nargs="+", default=[90, 1000])
    parser.add_argument(
        "--threads",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="inference threads, or auto as the exporter's default (chosen each cycle)",
    )
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=3, help="steady cycles timed (default 3)")
    parser.add_argument(
        "--hog",
        type=int,
        default=0,
        metavar="N",
        help="after the quiet steady cycles, time as many again beside N busy-loop processes",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="instead: time a start until fresh forecasts, with and without a saved window",
    )
    parser.add_argument("--repeat", type=int, default=1, help="starts timed with --restart")
    parser.add_argument(
        "--downtime", type=int, default=10, metavar="MINUTES", help="with --restart (default 10)"
    )
    args = parser.parse_args()
    exit_on_sigterm()
    for n in args.servers:
        if args.restart:
            restart(n, args.threads, args.repeat, args.downtime)
        else:
            bench(n, args.threads, args.scrapes, args.cycles, args.hog)


if __name__ == "__main__":
    main()
