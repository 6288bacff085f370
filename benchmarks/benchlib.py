"""What the exporter benchmarks share: a fake Prometheus query API, fleet churn, CPU hogs, /proc.

The fake query API answers POST /api/v1/query_range in Prometheus' JSON from a simulated fleet
held in memory, in a child process (so the exporter's RSS is its own). The simulated block
repeats day by day on either side, so a benchmark may run its clock as far as it likes.

Imported by exporter_bench.py and soak.py (they run from this folder, which Python puts first
on the module path); importing it starts nothing and does not import torch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import numpy as np

from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.generator.fleet import build_fleet, scaled_composition
from linborg.generator.simulate import Simulator

DAY_STEPS = 86400 // STEP_SECONDS
#: A join or leave step that never comes (before or after any step a benchmark asks for).
NEVER = 2**62


def aligned_now() -> dt.datetime:
    """Return the current UTC time rounded down to a whole 5-minute step."""
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    return end - dt.timedelta(minutes=end.minute % 5)


def wrap_steps(steps: np.ndarray, first: int, count: int) -> np.ndarray:
    """Return indexes into a block of ``count`` steps from ``first`` for any steps.

    A step outside the block maps to the step a whole number of days away that lies inside it,
    so the block repeats daily; the block must hold at least one day (``count`` >= DAY_STEPS).
    """
    if count < DAY_STEPS:
        raise ValueError(f"a block of {count} steps is shorter than a day")
    off = np.asarray(steps, np.int64) - first
    last = count - 1
    over = off > last
    off[over] -= DAY_STEPS * -(-(off[over] - last) // DAY_STEPS)
    under = off < 0
    off[under] += DAY_STEPS * -(off[under] // DAY_STEPS)
    return off


def churn_schedule(
    initial: int, per_event: int, event_steps: list[int], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return (join, leave) steps of ``initial + per_event * len(event_steps)`` fleet rows.

    ``initial`` rows, chosen at random, report from the start. At each event step
    ``per_event`` reporting rows, chosen at random, stop (their last sample is the step
    before) and as many rows that never reported start; the number reporting stays
    ``initial``. A row reports at steps s with join <= s < leave.
    """
    rows = initial + per_event * len(event_steps)
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows)
    join = np.full(rows, NEVER, np.int64)
    leave = np.full(rows, NEVER, np.int64)
    join[order[:initial]] = -NEVER
    members = list(order[:initial])
    waiting = list(order[initial:])
    for step in event_steps:
        leavers = set(rng.choice(len(members), per_event, replace=False).tolist())
        for k in leavers:
            leave[members[k]] = step
        joiners, waiting = waiting[:per_event], waiting[per_event:]
        join[joiners] = step
        members = [m for k, m in enumerate(members) if k not in leavers] + joiners
    return join, leave


class FakeQueryAPI:
    """query_range over a simulated fleet's history held in memory.

    ``hours`` of history are simulated up to ``end`` and repeat daily outside that block.
    ``rows`` fleet servers are simulated (``n_servers`` by default); with ``membership``
    (join, leave steps per row, see churn_schedule) a server is answered only for the steps it
    reports at, and not at all when it has none in the range, as Prometheus does.
    """

    def __init__(
        self,
        n_servers: int,
        end: dt.datetime,
        hours: int = 26,
        membership: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        rows = n_servers if membership is None else len(membership[0])
        self.fleet = build_fleet(scaled_composition(rows))
        self.membership = membership
        start = end - dt.timedelta(hours=hours)
        sim = Simulator(self.fleet, 1, start)
        self.steps = hours * (3600 // STEP_SECONDS) + 1
        self.first_step = int(start.timestamp()) // STEP_SECONDS
        self.values = {m: np.empty((len(self.fleet), self.steps)) for m in METRIC_NAMES}
        for k in range(self.steps):
            _, row, _ = sim.step()
            for m in METRIC_NAMES:
                self.values[m][:, k] = row[m]

    def answer(self, query: str, start: float, end: float, step: float) -> bytes:
        metric = query.removeprefix("linborg_")
        steps = np.arange(int(start) // STEP_SECONDS, int(end) // STEP_SECONDS + 1)
        vals = self.values[metric][:, wrap_steps(steps, self.first_step, self.steps)]
        stamps = (steps * STEP_SECONDS).tolist()
        live = None
        if self.membership is not None:
            join, leave = self.membership
            live = (steps >= join[:, None]) & (steps < leave[:, None])
        result = []
        for i, s in enumerate(self.fleet):
            pairs = zip(stamps, vals[i].tolist(), strict=True)
            if live is not None:
                if not live[i].any():
                    continue
                pairs = (p for p, keep in zip(pairs, live[i].tolist(), strict=True) if keep)
            result.append(
                {
                    "metric": {"__name__": query, "server": s.name, "profile": s.profile},
                    "values": [[t, f"{v:.10g}"] for t, v in pairs],
                }
            )
        doc = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return json.dumps(doc, separators=(",", ":")).encode()


def _exit_with_parent(parent: int) -> None:
    """Exit this process once ``parent`` is gone (it was killed and could not stop us)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _serve(api_args: tuple, parent: int, port_out) -> None:
    """Build the fleet's history and answer query_range until stopped (child process)."""
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    api = FakeQueryAPI(*api_args)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            q = {k: v[0] for k, v in parse_qs(body).items()}
            out = api.answer(q["query"], float(q["start"]), float(q["end"]), float(q["step"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.send(httpd.server_address[1])
    httpd.serve_forever()


@contextlib.contextmanager
def fake_prometheus(
    n_servers: int,
    end: dt.datetime,
    hours: int = 26,
    membership: tuple[np.ndarray, np.ndarray] | None = None,
):
    """Run a FakeQueryAPI in a child process; yield its URL; always stop it on the way out."""
    parent, child = mp.Pipe()
    args = ((n_servers, end, hours, membership), os.getpid(), child)
    proc = mp.get_context("fork").Process(target=_serve, args=args, daemon=True)
    proc.start()
    try:
        if not parent.poll(600):
            raise RuntimeError("the fake query API did not start within 10 minutes")
        yield f"http://127.0.0.1:{parent.recv()}"
    finally:
        proc.kill()
        proc.join()


#: A busy loop that ends once the process that started it is gone (argv[1]: its pid), so a
#: hog never outlives a benchmark that was killed without running its clean-up.
HOG_CODE = (
    "import os, sys\n"
    "parent = int(sys.argv[1])\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(100_000):\n"
    "        pass\n"
)


@contextlib.contextmanager
def cpu_hogs(n: int):
    """Keep ``n`` processes spinning on the CPU inside the block; always stop them after it."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", HOG_CODE, str(os.getpid())]))
        if procs:
            time.sleep(0.5)  # the interpreters are up and spinning before anything is timed
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so clean-up (hogs, the fake API) runs as on Ctrl-C."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def rss_bytes() -> int:
    """Return this process's resident set size now (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def trimmed_rss_bytes() -> int | None:
    """Collect garbage, hand glibc's free heap back to the kernel, then return VmRSS.

    VmRSS right after a cycle swings by tens of MiB with the batch's shape (glibc keeps freed
    inference buffers); after malloc_trim it is the memory in use, the figure a leak moves.
    None without glibc's malloc_trim (musl).
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim(0)
    return rss_bytes()


def open_fds() -> int:
    """Return how many file descriptors this process holds (the listing's own not counted)."""
    return len(os.listdir("/proc/self/fd")) - 1


def slope_per_100(values, warmup: int = 0) -> float:
    """Return the least-squares slope of ``values`` per 100 samples, the first ``warmup`` left out.

    The samples are one per cycle, so this is the growth per 100 cycles.
    """
    y = np.asarray(values, np.float64)[warmup:]
    if len(y) < 2:
        raise ValueError(f"{len(y)} samples after a warm-up of {warmup}: need at least 2")
    x = np.arange(len(y), dtype=np.float64)
    return float(np.polyfit(x, y, 1)[0] * 100)
