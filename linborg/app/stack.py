"""The whole system on loopback, without Docker: the demo and the end-to-end test run this.

Started in order: a webhook sink (Alertmanager's receivers point at it), the synthetic fleet's
live endpoint (its last 26 hours backfilled into Prometheus with promtool first, with the same
scripted incident), node_exporter, Alertmanager, Prometheus with the real rules, and the
exporter serving the model bundle. Every process listens on 127.0.0.1 only; ``stop()`` ends
them all, and a state file in the working folder lets ``status`` tell what is running.

With ``Options.replay_hours``, past forecasts are made before Prometheus starts serving: a
Prometheus holding only the backfilled history answers an in-process exporter (the same model,
configuration and code as ``linborg serve``) that runs one cycle per 5-minute step over the
last ``replay_hours``; each cycle's per-server families are backfilled with the cycle's own
timestamp. They are real model outputs, but computed at start-up over the past rather than
observed live, so rules and panels that read ``linborg_forecast ... offset <horizon>`` have
data at once. Nothing else of the exporter (its self-metrics) is replayed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import requests
import yaml

from linborg.contract import STEP_SECONDS, ContractError

#: The files the stack reads ship as package data, so the demo runs from a wheel as well.
PROMETHEUS_DIR = Path(str(resources.files("linborg.prometheus")))
ALERTMANAGER_DIR = Path(str(resources.files("linborg.alertmanager")))
DEFAULT_MODEL = Path(str(resources.files("linborg.models"))) / "default"
#: The checkout this module runs from, or None when it is installed from a wheel.
CHECKOUT = Path(__file__).resolve().parents[2]
if not (CHECKOUT / "pyproject.toml").is_file():
    CHECKOUT = None
STATE_FILE = "stack.json"

#: Binaries the stack needs, with the Debian package that has each (first name found wins).
BINARIES = {
    "prometheus": (("prometheus",), "prometheus"),
    "promtool": (("promtool",), "prometheus"),
    "alertmanager": (("prometheus-alertmanager", "alertmanager"), "prometheus-alertmanager"),
    "node_exporter": (
        ("prometheus-node-exporter", "node_exporter"),
        "prometheus-node-exporter",
    ),
}


@dataclass
class Ports:
    """Loopback ports of the stack's services."""

    prometheus: int = 9090
    alertmanager: int = 9093
    node_exporter: int = 9100
    generator: int = 9105
    exporter: int = 9106
    sink: int = 9099


@dataclass
class Script:
    """The incident scripted into the demo fleet.

    The precursor started ``precursor_minutes - onset_in_minutes`` before the stack starts, so
    the history already shows it developing; the labelled onset is ``onset_in_minutes`` after
    the start. Every other server is kept healthy for the next day so it pages no one.

    The scripted incident is a disk filling up on a database server, the incident type the
    shipped model warns of most reliably (every disk fill of the held-out fleet, a median 270
    minutes before onset: models/default/evaluation). The precursor ramp accelerates
    (generator/simulate.py): disk_usage_pct, about 63% when the demo starts 120 minutes into
    the 300-minute precursor, reaches its warning level (85) about 130 minutes later. The risk
    score of the shipped bundle, counted above what healthy database servers score
    (linborg/risk.py), is 21-46 at the first forecast whatever the hour, with
    disk_usage_pct driving, so the predicted-incident warning comes from the forecast following
    the ramp, and the demo prints how many minutes earlier than a plain threshold alert on the
    same metric it came (tests/test_early_warning.py checks the shipped model's forecasts for
    it, at every start hour; tests/test_e2e_alerts.py checks the alert on a live stack). The
    demo's incident was a connection leak on a web_api server until the bundle's risk counted
    only risk above healthy: that leak's risk above healthy cleared the rules' 5 only about 20
    minutes before its metric crosses warning, and at some hours not before it
    (docs/training.md).
    """

    server: str = "ppdb001"
    incident: str = "disk_fill"
    precursor_minutes: int = 300
    onset_in_minutes: int = 180
    duration_minutes: int = 120


#: The ``for:`` guard of the demo's alert rules (the shipped rules: 10 min and 15 min).
DEMO_FOR = "5m"


@dataclass
class Options:
    """How the stack runs. The defaults are the demo's; the end-to-end test shortens them."""

    workdir: Path = Path("out/stack")
    ports: Ports = field(default_factory=Ports)
    composition: dict[str, int] = field(
        default_factory=lambda: {
            "ml_compute": 4,
            "database": 3,
            "web_api": 3,
            "conductor_mgmt": 1,
            "data_ingest": 2,
            "risk_analytics": 2,
            "generic": 1,
        }
    )
    seed: int = 11
    model: Path = DEFAULT_MODEL
    script: Script = field(default_factory=Script)
    exporter_interval: str = "1m"
    scrape_interval: str = "10s"
    evaluation_interval: str = "10s"
    #: Overrides of the mixin's CONFIG (linborg/mixin/__init__.py). The demo shortens the
    #: ``for:`` guards of the shipped rules (10 min critical, 15 min warning) to DEMO_FOR, so
    #: that its alert shows within about ten minutes; the tests shorten them further.
    rule_overrides: dict = field(
        default_factory=lambda: {"for_critical": DEMO_FOR, "for_warning": DEMO_FOR}
    )
    alert_group_wait: str | None = None
    history_hours: int = 26
    #: Hours of exporter cycles replayed over the backfilled history (0: none); see the module
    #: docstring. The history then reaches at least a day before the first replayed cycle.
    replay_hours: int = 0
    #: Spans left out of the backfilled history, server -> (hours ago, hours ago), older first:
    #: a server monitored only for the last few hours, or one with a gap in its history. The
    #: live endpoint serves every server.
    history_gaps: dict[str, tuple[float, float]] = field(default_factory=dict)


def fast(opts: Options) -> Options:
    """Return ``opts`` at the tests' pace: an alert reaches the sink within a couple of minutes.

    The exporter runs every 10 s, Prometheus scrapes and evaluates every 2 s, and the alerts'
    ``for:`` guards are 20 s instead of 10-15 minutes; everything else is the real thing.
    """
    return dataclasses.replace(
        opts,
        exporter_interval="10s",
        scrape_interval="2s",
        evaluation_interval="2s",
        rule_overrides={"for_critical": "20s", "for_warning": "20s"},
        alert_group_wait="1s",
    )


def find_binaries() -> tuple[dict[str, str], list[str]]:
    """Return (name -> path of each binary found, the problems for those missing)."""
    found, missing = {}, []
    for name, (candidates, package) in BINARIES.items():
        path = next((p for c in candidates if (p := shutil.which(c))), None)
        if path:
            found[name] = path
        else:
            missing.append(f"{name} (Debian/Ubuntu package '{package}')")
    return found, missing


def port_problems(ports: Ports) -> list[str]:
    """Return one line per port of ``ports`` that is already taken on 127.0.0.1."""
    problems = []
    for name, port in asdict(ports).items():
        with socket.socket() as s:
            # As servers do: connections of a previous run in TIME_WAIT do not block the port;
            # a process listening on it does.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                flag = "--" + name.replace("_", "-") + "-port"
                problems.append(f"port {port} ({name}) is in use; choose another with {flag}")
    return problems


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_handed_out: set[int] = set()


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are free on 127.0.0.1 right now.

    They are chosen below the kernel's ephemeral range, so outgoing connections of services
    already started (which take ephemeral ports) cannot take a port before its service binds
    it, and never twice in one process.
    """
    import random

    low, _ = _ephemeral_range()
    top = low - 1 if low > 20000 else 60999
    bottom = 20000 if low > 20000 else low
    ports: list[int] = []
    for _attempt in range(2000):
        if len(ports) == count:
            break
        port = random.randint(bottom, top)
        if port in _handed_out or port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    if len(ports) < count:
        raise ContractError(f"found only {len(ports)} of {count} free ports on 127.0.0.1")
    _handed_out.update(ports)
    return ports


def free_stack_ports() -> Ports:
    """Ports for a stack in which every service listens on a free loopback port."""
    names = list(asdict(Ports()))
    return Ports(**dict(zip(names, free_ports(len(names)), strict=True)))


def demo_script(
    opts: Options, now: dt.datetime
) -> tuple[int, dt.datetime, dt.datetime, dt.datetime, list[tuple[dt.datetime, dict]]]:
    """Return (history hours, origin, precursor start, onset, scenarios) of a stack started now.

    The scenarios are the generator's script: every other server healthy for a day, and the
    scripted incident on ``opts.script.server``, both on the 5-minute step grid.
    """
    from linborg.generator.fleet import build_fleet

    hours = max(opts.history_hours, opts.replay_hours + 25 if opts.replay_hours else 0)
    origin = (now - dt.timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    names = [s.name for s in build_fleet(opts.composition)]
    sc = opts.script
    if sc.server not in names:
        raise ContractError(f"scripted server {sc.server} is not in the fleet")
    step = dt.timedelta(seconds=STEP_SECONDS)
    onset_at = now + dt.timedelta(minutes=sc.onset_in_minutes)
    precursor_at = onset_at - dt.timedelta(minutes=sc.precursor_minutes)
    precursor_at = origin + ((precursor_at - origin) // step) * step
    onset_at = precursor_at + dt.timedelta(minutes=sc.precursor_minutes)  # on the step grid
    others = [n for n in names if n != sc.server]
    # "healthy" holds for a day: from the start of the history once a day, and an hour ago.
    healthy = {"servers": others, "scenario": "healthy"}
    hour_ago = origin + ((now - dt.timedelta(hours=1) - origin) // step) * step
    days = [origin + step + dt.timedelta(days=k) for k in range(hours // 24 + 1)]
    script = [
        *((at, healthy) for at in days if at < hour_ago),
        (hour_ago, healthy),
        (
            precursor_at,
            {
                "servers": [sc.server],
                "scenario": "degrading",
                "incident": sc.incident,
                "precursor_minutes": sc.precursor_minutes,
                "duration_minutes": sc.duration_minutes,
            },
        ),
    ]
    return hours, origin, precursor_at, onset_at, script


def scripted_crossing(
    composition: dict[str, int],
    seed: int,
    origin: dt.datetime,
    scenarios: list[tuple[dt.datetime, dict]],
    server: str,
    until: dt.datetime,
    level: str = "warning",
) -> tuple[dict | None, list[tuple[dt.datetime, float]]]:
    """Return when the scripted incident's metric on ``server`` first reaches ``level``.

    The generator is deterministic: a second simulator with the fleet, seed, origin and script
    of the live one produces the same samples (the backfill relies on it too). It is stepped up
    to ``until``; the crossing is the first 5-minute step, at or after the precursor's start,
    whose value is at or past the level of the server's profile (the packaged thresholds, which
    the stack's exporter uses), i.e. when a plain threshold alert without ``for:`` on the
    metric would fire. Returns (None, []) when the script starts no incident on ``server``;
    else ({server, profile, metric, level, threshold, at (ISO time or None)}, the metric's
    samples as [(time, value)]).
    """
    from linborg.contract import METRICS_BY_NAME
    from linborg.generator.fleet import build_fleet
    from linborg.generator.simulate import Simulator
    from linborg.thresholds import load_thresholds

    sim = Simulator(build_fleet(composition), seed, origin)
    for at, request in scenarios:
        sim.schedule(at, request)
    i = sim.index[server]
    steps = []
    while sim.time_of(sim.k) <= until:
        t, values, _ = sim.step()
        steps.append((t, {name: float(v[i]) for name, v in values.items()}))
    incidents = [x for x in sim.incidents if x.server == server and x.source == "scenario"]
    if not incidents:
        return None, []
    inc = incidents[0]
    m = METRICS_BY_NAME[inc.metric]
    threshold = float(getattr(load_thresholds().get(inc.profile, m.name), level))
    start = inc.precursor_start or inc.onset
    samples = [(t, row[m.name]) for t, row in steps]
    past = [
        t
        for t, v in samples
        if t >= start and (v >= threshold if m.direction == "above" else v <= threshold)
    ]
    crossing = {
        "server": server,
        "profile": inc.profile,
        "metric": m.name,
        "level": level,
        "threshold": threshold,
        "at": past[0].isoformat() if past else None,
    }
    return crossing, samples


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.5):
    """Call ``check`` until it returns something truthy; raise ContractError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (requests.RequestException, ValueError, KeyError) as err:
            last = err
        time.sleep(interval)
    raise ContractError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


class Service:
    """One started binary, its output in a log file."""

    def __init__(self, name: str, args: list[str], log: Path):
        self.name = name
        self.args = args
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM); ``stop()`` then waits for it."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def stop(self, grace: float = 15) -> None:
        """Stop the process: SIGTERM, and SIGKILL if it is still there after ``grace`` s."""
        self.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._out.close()

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _ready(url: str, service: Service) -> Callable[[], bool]:
    def check() -> bool:
        if not service.alive():
            raise ContractError(f"{service.name} exited; its log ends:\n{service.tail()}")
        return requests.get(url, timeout=2).status_code == 200

    return check


def _backfill(promtool: str, om: Path, data: Path) -> None:
    """Create TSDB blocks in ``data`` from the OpenMetrics file ``om``."""
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        raise ContractError(f"promtool backfill of {om.name} failed:\n" + result.stderr[-2000:])


def _cut_history(om: Path, gaps: dict[str, tuple[float, float]], now: dt.datetime) -> None:
    """Drop the samples of ``gaps`` (server -> (hours ago, hours ago)) from ``om``."""
    end = now.timestamp()
    spans = {server: (end - a * 3600, end - b * 3600) for server, (a, b) in gaps.items()}
    kept = []
    with om.open() as lines:
        for line in lines:
            found = None if line.startswith("#") else re.search(r'server="([^"]*)"', line)
            span = spans.get(found.group(1)) if found else None
            if span and span[0] <= float(line.rsplit(" ", 1)[1]) < span[1]:
                continue
            kept.append(line)
    om.write_text("".join(kept))


def _add_samples(families: dict[str, list[str]], text: str, labels: str, t: int) -> None:
    """Add the samples of exposition ``text`` to ``families`` with ``labels`` and time ``t``."""
    head = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("# HELP"):
            head = line
        elif line.startswith("# TYPE"):
            head += line
            families.setdefault(head, [])
        else:
            series, value = line.rstrip("\n").rsplit(" ", 1)
            families[head].append(f"{series[:-1]},{labels}}} {value} {t}\n")


def prometheus_config(opts: Options, rule_files: list[Path]) -> str:
    """Return prometheus/prometheus.yml with this stack's ports, intervals and rule paths."""
    doc = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    p = opts.ports
    doc["global"] = {
        "scrape_interval": opts.scrape_interval,
        "evaluation_interval": opts.evaluation_interval,
    }
    doc["rule_files"] = [str(f) for f in rule_files]
    doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{p.alertmanager}"
    ]
    ports = {"linborg-generator": p.generator, "linborg-exporter": p.exporter}
    ports["node"] = p.node_exporter
    for job in doc["scrape_configs"]:
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[job['job_name']]}"]
    return yaml.safe_dump(doc, sort_keys=False)


class Stack:
    """Start, watch and stop the local stack."""

    def __init__(self, opts: Options, log: Callable[[str], None] = print):
        self.opts = opts
        self.log = log
        self.services: list[Service] = []
        self.sink = None
        self.generator = None
        self.live = None
        self.started_at: dt.datetime | None = None
        self.incident: dict | None = None
        #: The scripted incident's metric on its server, [(time, value)] per 5-minute step,
        #: from the generator's deterministic script (see ``scripted_crossing``).
        self.scripted_samples: list[tuple[dt.datetime, float]] = []
        self.replay: dict | None = None

    # --- start --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything and return when every service answers; stop all on failure."""
        opts = self.opts
        bins, missing = find_binaries()
        if missing:
            raise ContractError(
                "missing programs: "
                + "; ".join(missing)
                + ". Install them with: sudo apt-get install -y prometheus "
                "prometheus-alertmanager prometheus-node-exporter (or run scripts/bootstrap.sh)"
            )
        busy = port_problems(opts.ports)
        if busy:
            raise ContractError("; ".join(busy))
        if not (opts.model / "model.json").exists():
            raise ContractError(f"model bundle {opts.model}: not found (model.json missing)")
        try:
            self._start(bins)
        except BaseException:
            self.stop()
            raise

    def _start(self, bins: dict[str, str]) -> None:
        from linborg.app.sink import WebhookSink
        from linborg.generator.fleet import build_fleet
        from linborg.generator.live import LiveFleet, serve
        from linborg.generator.output import write_openmetrics

        opts, p = self.opts, self.opts.ports
        work = opts.workdir.resolve()
        if work.exists():
            shutil.rmtree(work)  # a fresh stack each run: running it twice works
        work.mkdir(parents=True)
        now = dt.datetime.now(dt.UTC)
        self.started_at = now
        fleet = build_fleet(opts.composition)
        hours, origin, precursor_at, onset_at, script = demo_script(opts, now)
        sc = opts.script
        self.log(f"stack: working folder {work}")

        self.sink = WebhookSink(
            "127.0.0.1", p.sink, log_path=work / "sink.jsonl", stream=sys.stdout
        ).start()

        self.live = LiveFleet(fleet, opts.seed, origin, scenarios=script)
        self.generator = serve(self.live, "127.0.0.1", p.generator)
        scripted = [i for i in self.live.sim.incidents if i.source == "scenario"]
        self.incident = {
            "server": sc.server,
            "type": sc.incident,
            "onset": (precursor_at + dt.timedelta(minutes=sc.precursor_minutes)).isoformat(),
            "precursor_start": precursor_at.isoformat(),
            "labelled": [i.as_dict() for i in scripted],
        }
        crossing, self.scripted_samples = scripted_crossing(
            opts.composition,
            opts.seed,
            origin,
            script,
            sc.server,
            onset_at + dt.timedelta(minutes=sc.duration_minutes),
        )
        self.incident["threshold_crossing"] = crossing
        self.log(
            f"stack: fleet of {len(fleet)} servers; scripted {sc.incident} on {sc.server}, "
            f"precursor since {precursor_at:%H:%M}, onset at {onset_at:%H:%M} UTC"
        )
        if crossing and crossing["at"]:
            at = dt.datetime.fromisoformat(crossing["at"])
            self.log(
                f"stack: {crossing['metric']} on {sc.server} reaches its {crossing['level']} "
                f"level {crossing['threshold']:g} at {at:%H:%M} UTC (the generator's script)"
            )

        self.log(f"stack: backfilling {hours} h of history with promtool")
        om, _ = write_openmetrics(
            work / "backfill.om", fleet, opts.seed, origin, self.live.step_time, scenarios=script
        )
        if opts.history_gaps:
            _cut_history(om, opts.history_gaps, now)
        _backfill(bins["promtool"], om, work / "prometheus-data")
        if opts.replay_hours:
            self._replay(bins, now)

        node = Service(
            "node_exporter",
            [bins["node_exporter"], f"--web.listen-address=127.0.0.1:{p.node_exporter}",
             "--collector.tcpstat"],
            work / "node_exporter.log",
        )  # fmt: skip
        self.services.append(node)

        from linborg.app.amconfig import local_config

        am_config = work / "alertmanager.yml"
        am_config.write_text(
            local_config(
                (ALERTMANAGER_DIR / "alertmanager.yml").read_text(),
                self.sink.url,
                work / "secrets",
                group_wait=opts.alert_group_wait,
                group_interval=opts.alert_group_wait,
            )
        )
        am = Service(
            "alertmanager",
            [bins["alertmanager"], f"--config.file={am_config}",
             f"--web.listen-address=127.0.0.1:{p.alertmanager}", "--cluster.listen-address=",
             f"--storage.path={work / 'alertmanager-data'}"],
            work / "alertmanager.log",
        )  # fmt: skip
        self.services.append(am)

        rules = [
            PROMETHEUS_DIR / "rules" / "node_exporter.rules.yml",
            PROMETHEUS_DIR / "rules" / "linborg.quality.rules.yml",
        ]
        if opts.rule_overrides:
            from linborg.mixin.alert_rules import render

            alerts = work / "linborg.alerts.yml"
            alerts.write_text(render(opts.rule_overrides))
            rules.append(alerts)
        else:
            rules.append(PROMETHEUS_DIR / "rules" / "linborg.alerts.yml")
        prom_config = work / "prometheus.yml"
        prom_config.write_text(prometheus_config(opts, rules))
        prom = Service(
            "prometheus",
            [bins["prometheus"], f"--config.file={prom_config}",
             f"--storage.tsdb.path={work / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{p.prometheus}",
             "--storage.tsdb.retention.time=30d"],
            work / "prometheus.log",
        )  # fmt: skip
        self.services.append(prom)

        exporter_config = work / "exporter.yml"
        exporter_config.write_text(yaml.safe_dump(self._exporter_settings(), sort_keys=False))
        self._wait_ready(am, f"http://127.0.0.1:{p.alertmanager}/-/ready", 60)
        self._wait_ready(prom, f"http://127.0.0.1:{p.prometheus}/-/ready", 120)
        self._wait_ready(node, f"http://127.0.0.1:{p.node_exporter}/metrics", 30)
        exporter = Service(
            "exporter",
            [sys.executable, "-m", "linborg", "serve", f"--config.file={exporter_config}",
             f"--web.listen-address=127.0.0.1:{p.exporter}"],
            work / "exporter.log",
        )  # fmt: skip
        self.services.append(exporter)
        self._wait_ready(exporter, f"http://127.0.0.1:{p.exporter}/readyz", 300)
        self.write_state()

    def _wait_ready(self, service: Service, url: str, timeout: float) -> None:
        wait_until(_ready(url, service), timeout, f"{service.name} at {url}")
        self.log(f"stack: {service.name} ready")

    def _exporter_settings(self) -> dict:
        """Return the exporter's configuration (exporter.yml) as data."""
        return {
            "prometheus": {
                "url": f"http://127.0.0.1:{self.opts.ports.prometheus}",
                "timeout": "30s",
            },
            "model": {"bundle": str(self.opts.model)},
            "interval": self.opts.exporter_interval,
            "threads": 1,
        }

    def _replay(self, bins: dict[str, str], now: dt.datetime) -> None:
        """Replay exporter cycles over the backfilled history; backfill their forecasts."""
        import torch

        from linborg.bundle import load_bundle
        from linborg.exporter.collector import render_per_server
        from linborg.exporter.config import config_from_dict
        from linborg.exporter.cycle import Exporter, horizon_steps
        from linborg.prom import PrometheusClient
        from linborg.thresholds import load_thresholds

        opts, work = self.opts, self.opts.workdir.resolve()
        cfg = config_from_dict(self._exporter_settings(), "replay")
        data = work / "prometheus-data"
        (work / "prometheus-replay.yml").write_text("global:\n  scrape_interval: 1m\n")
        prom = Service(
            "prometheus-replay",
            [bins["prometheus"], f"--config.file={work / 'prometheus-replay.yml'}",
             f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=30d",
             f"--web.listen-address=127.0.0.1:{opts.ports.prometheus}"],
            work / "prometheus-replay.log",
        )  # fmt: skip
        began = time.monotonic()
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
        try:
            self._wait_ready(prom, f"{cfg.prometheus_url}/-/ready", 120)
            client = PrometheusClient(cfg.prometheus_url, timeout=cfg.timeout_seconds)
            exporter = Exporter(cfg, client, load_bundle(opts.model), load_thresholds())
            extra = f'instance="127.0.0.1:{opts.ports.exporter}",job="linborg-exporter"'
            families: dict[str, list[str]] = {}
            last = int(now.timestamp()) // STEP_SECONDS * STEP_SECONDS
            cycles = range(last - opts.replay_hours * 3600, last + 1, STEP_SECONDS)
            for t in cycles:
                snap = exporter.run_once(float(t))
                if snap is None:
                    raise ContractError(f"replayed cycle at {t} got no data from Prometheus")
                text = render_per_server(
                    snap, horizon_steps(cfg), cfg.quantiles, cfg.series_budget_per_server
                ).text.decode()
                _add_samples(families, text, extra, t)
        finally:
            torch.set_num_threads(threads)
            prom.stop()
        om = work / "replay.om"
        om.write_text(
            "".join(head + "".join(lines) for head, lines in families.items()) + "# EOF\n"
        )
        _backfill(bins["promtool"], om, data)
        self.replay = {"cycles": len(cycles), "seconds": round(time.monotonic() - began, 1)}
        self.log(
            f"stack: replayed {len(cycles)} exporter cycles over the past {opts.replay_hours} h "
            f"in {self.replay['seconds']:.0f}s (forecasts made now over past data)"
        )

    def scripted_value(self, at: dt.datetime) -> float | None:
        """Return the scripted metric's value the generator serves at ``at`` (its 5-min step)."""
        value = None
        for t, v in self.scripted_samples:
            if t > at:
                break
            value = v
        return value

    # --- state --------------------------------------------------------------------------------

    def urls(self) -> dict[str, str]:
        p = self.opts.ports
        return {
            "prometheus": f"http://127.0.0.1:{p.prometheus}",
            "alertmanager": f"http://127.0.0.1:{p.alertmanager}",
            "exporter": f"http://127.0.0.1:{p.exporter}/metrics",
            "generator": f"http://127.0.0.1:{p.generator}/metrics",
            "node_exporter": f"http://127.0.0.1:{p.node_exporter}/metrics",
            "sink": f"http://127.0.0.1:{p.sink}/received",
        }

    def write_state(self) -> None:
        """Write what runs where into the working folder, for ``status``."""
        state = {
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "model": str(self.opts.model),
            "urls": self.urls(),
            "processes": {s.name: s.proc.pid for s in self.services},
            "incident": self.incident,
        }
        (self.opts.workdir / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")

    # --- stop ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every service and the in-process endpoints, within about 15 seconds."""
        for service in reversed(self.services):  # all at once: the waits overlap
            with contextlib.suppress(Exception):
                service.terminate()
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()
        self.services = []
        if self.generator is not None:
            self.generator.shutdown()
            self.generator.server_close()
            self.generator = None
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        with contextlib.suppress(OSError):
            (self.opts.workdir / STATE_FILE).unlink()


def status(workdir: Path) -> dict:
    """Return what a stack started from ``workdir`` runs now (empty when none)."""
    path = Path(workdir) / STATE_FILE
    if not path.exists():
        return {}
    state = json.loads(path.read_text())
    alive = {}
    for name, pid in state.get("processes", {}).items():
        try:
            os.kill(pid, 0)
            alive[name] = True
        except OSError:
            alive[name] = False
    state["alive"] = alive
    try:
        os.kill(state["pid"], 0)
        state["running"] = True
    except (OSError, KeyError):
        state["running"] = False
    return state


# --- the `linborg demo` and `linborg status` commands --------------------------------------


def incident_notice(records: list[dict], server: str) -> dict | None:
    """Return the first sink record that notifies a firing LinborgPredictedIncident on ``server``.

    A warning is a Slack post (its attachment's title and text), a critical a PagerDuty
    trigger (its summary), as alertmanager/templates/linborg.tmpl writes them.
    """
    for record in records:
        body = record.get("body")
        if not isinstance(body, dict):
            continue
        if record["path"].startswith("/slack/"):
            post = (body.get("attachments") or [{}])[0]
            title, text = post.get("title", ""), post.get("text", "")
            if "[FIRING" in title and "LinborgPredictedIncident" in title and f"*{server}*" in text:
                return record
        elif record["path"].startswith("/pagerduty"):
            summary = (body.get("payload") or {}).get("summary", "")
            trigger = body.get("event_action") == "trigger"
            named = re.search(rf"\b{re.escape(server)}\b", summary)
            if trigger and named and "LinborgPredictedIncident" in summary:
                return record
    return None


def lead_over_threshold(stack: Stack, notice: dict) -> str:
    """Return a line saying how much earlier than a plain threshold alert ``notice`` came.

    The threshold alert is the scripted metric at or past its warning level with no ``for:``
    (the most favourable case for it): it fires at the crossing that ``scripted_crossing``
    computed from the generator's script. The warning counts from its arrival at the sink,
    after its own ``for:`` guard and Alertmanager's grouping.
    """
    crossing = (stack.incident or {}).get("threshold_crossing")
    arrived = dt.datetime.fromisoformat(notice["received_at"])
    channel = "Slack" if notice["path"].startswith("/slack/") else "PagerDuty"
    head = f"demo: the predicted-incident alert for {stack.opts.script.server} reached {channel}"
    if not crossing:
        return f"{head} at {arrived:%H:%M:%S} UTC (no scripted incident to compare with)."
    metric, level, limit = crossing["metric"], crossing["level"], crossing["threshold"]
    now = stack.scripted_value(arrived)
    where = "" if now is None else f" with {metric} at {now:g}"
    plain = f"a plain threshold alert ({metric} at or past {level} {limit:g}, no `for:`)"
    if crossing["at"] is None:
        return (
            f"{head} at {arrived:%H:%M:%S} UTC{where}; {metric} does not reach its {level} "
            f"level {limit:g} in the script, so {plain} would not fire at all."
        )
    at = dt.datetime.fromisoformat(crossing["at"])
    minutes = (at - arrived).total_seconds() / 60
    if minutes > 0:
        return (
            f"{head} at {arrived:%H:%M:%S} UTC{where}, {minutes:.0f} minutes before {metric} "
            f"reaches its {level} level {limit:g} ({at:%H:%M} UTC, from the generator's script): "
            f"{minutes:.0f} minutes earlier than {plain}."
        )
    return (
        f"{head} at {arrived:%H:%M:%S} UTC{where}, {-minutes:.0f} minutes AFTER {metric} "
        f"reached its {level} level {limit:g} ({at:%H:%M} UTC, from the generator's script): no "
        f"earlier than {plain}."
    )


def _print_welcome(stack: Stack) -> None:
    u = stack.urls()
    inc = stack.incident or {}
    guard = stack.opts.rule_overrides.get("for_warning", "15m")
    from linborg.duration import parse_duration as parse_seconds

    seconds = parse_seconds(guard)
    minutes = f"{round(seconds / 60) + 1} minutes" if seconds >= 60 else "a minute"
    onset = dt.datetime.fromisoformat(inc["onset"]) if inc.get("onset") else None
    lines = [
        "",
        "LINBORG is running on loopback. Open:",
        f"  Prometheus     {u['prometheus']}/graph?g0.expr="
        "linborg_risk_score%7Bwindow%3D%228h%22%7D",
        f"  alerts         {u['prometheus']}/alerts",
        f"  Alertmanager   {u['alertmanager']}",
        f"  exporter       {u['exporter']}",
        f"  generator      {u['generator']}",
        f"  node_exporter  {u['node_exporter']}",
        f"  webhook sink   {u['sink']}  (stands in for PagerDuty and Slack; log: "
        f"{stack.opts.workdir / 'sink.jsonl'})",
        "",
        f"Model bundle: {stack.opts.model}",
    ]
    crossing = inc.get("threshold_crossing") or {}
    if onset:
        lines += [
            f"Scripted incident: {inc['type']} on {inc['server']}, developing since "
            f"{dt.datetime.fromisoformat(inc['precursor_start']):%H:%M} UTC, labelled onset "
            f"{onset:%H:%M} UTC.",
        ]
        if crossing.get("at"):
            at = dt.datetime.fromisoformat(crossing["at"])
            lines.append(
                f"Its {crossing['metric']} reaches the {crossing['level']} level "
                f"{crossing['threshold']:g} at {at:%H:%M} UTC (from the generator's script): a "
                "plain threshold alert on it would fire then."
            )
        lines += [
            "Watch linborg_risk_score and linborg_time_to_breach_seconds for it. The "
            "LinborgPredictedIncident warning reaches the sink (printed below, as a Slack "
            f"post to #linborg-web-api) once the forecast predicts it and its `for: {guard}` "
            f"guard has held (at the earliest {minutes} from now); the demo then prints how "
            "many minutes earlier than that threshold alert it came.",
            f"(The demo's alert rules wait `for: {guard}`; the shipped rules in "
            "prometheus/rules/ wait 10 minutes (critical) and 15 minutes (warning).)",
            "Other servers may post Slack warnings too: a warning means a pessimistic (p90) "
            "forecast crosses a warning threshold within 8 hours, as busy healthy servers' "
            "do (database iowait, risk_analytics CPU). Only critical alerts page.",
        ]
    lines += ["", "Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)


def cmd_demo(args) -> int:
    """Run the stack until interrupted."""
    import signal
    import threading

    ports = Ports(
        prometheus=args.prometheus_port,
        alertmanager=args.alertmanager_port,
        node_exporter=args.node_exporter_port,
        generator=args.generator_port,
        exporter=args.exporter_port,
        sink=args.sink_port,
    )
    opts = Options(workdir=Path(args.workdir), ports=ports, model=Path(args.model))
    if args.fast:
        opts = fast(opts)
    running = status(opts.workdir)
    if running.get("running"):
        raise ContractError(
            f"a stack from {opts.workdir} is already running (pid {running['pid']}); stop it "
            "with Ctrl-C in its terminal, or use another --workdir and ports"
        )
    stack = Stack(opts, log=lambda line: print(line, flush=True))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C stops the stack even when this process inherited SIGINT as ignored (started in
    # the background by a shell without job control, as CI scripts do).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stack.start()
        _print_welcome(stack)
        noticed = False
        while not stop.is_set():
            stop.wait(5)
            if not noticed and stack.sink is not None:
                notice = incident_notice(stack.sink.received(), opts.script.server)
                if notice:
                    print(lead_over_threshold(stack, notice), flush=True)
                    noticed = True
            dead = [s.name for s in stack.services if not s.alive()]
            if dead:
                print(f"stack: {', '.join(dead)} stopped unexpectedly; see the logs in "
                      f"{opts.workdir}", file=sys.stderr)  # fmt: skip
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        if stack.services:  # nothing to announce when start-up failed before anything ran
            print("stack: stopping", flush=True)
        stack.stop()
    return 0


def cmd_status(args) -> int:
    """Print what a stack started from ``--workdir`` runs."""
    state = status(Path(args.workdir))
    if not state or not state.get("running"):
        print(f"no LINBORG stack is running from {args.workdir}")
        return 1
    print(f"LINBORG stack (pid {state['pid']}), started {state['started_at']}")
    print(f"model bundle: {state['model']}")
    for name, url in state["urls"].items():
        pid = state["processes"].get(name)
        alive = state["alive"].get(name, True)
        how = f"pid {pid}" if pid else "in the stack process"
        print(f"  {name:<14} {'up  ' if alive else 'DOWN'} {url}  ({how})")
    return 0


def default_workdir() -> Path:
    """Return the demo's folder: out/demo of this checkout, whatever the current folder.

    Installed from a wheel (no checkout), it is out/demo of the current folder.
    """
    return (CHECKOUT or Path.cwd()) / "out" / "demo"


def add_parsers(sub) -> None:
    """Add `demo` and `status` to the `linborg` parser."""
    workdir = str(default_workdir())
    p = sub.add_parser(
        "demo",
        help="run the whole system on loopback (no Docker)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--workdir", default=workdir, help="folder for data, configs and logs")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model bundle")
    d = Ports()
    for name in asdict(d):
        flag = "--" + name.replace("_", "-") + "-port"
        p.add_argument(flag, type=int, default=getattr(d, name), help=f"{name} port")
    p.add_argument(
        "--fast", action="store_true", help="short intervals and alert guards (tests, a quick look)"
    )
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser(
        "status",
        help="tell what the demo stack runs, where, with which model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--workdir", default=workdir, help="the demo's --workdir")
    p.set_defaults(func=cmd_status)
