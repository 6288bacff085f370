"""Live mode: serve the simulated fleet's 14 metrics over HTTP in real time, with scenario control.

Endpoints:
  GET  /metrics    the 14 LINBORG metrics of every server (Prometheus text format)
  GET  /incidents  the incident labels so far (JSON)
  GET  /fleet      servers and profiles (JSON)
  POST /scenario   change servers now; JSON body, see ``LiveFleet.scenario``
  GET  /healthz    "ok"
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from linborg.contract import PROFILE_NAMES, ContractError
from linborg.generator.fleet import Server
from linborg.generator.output import exposition, label_sets
from linborg.generator.simulate import Simulator

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def default_origin(now: dt.datetime) -> dt.datetime:
    """Return the default start of the process: midnight UTC of the day 24 hours ago.

    Commands run on the same day agree on it, so a separate backfill and serve line up.
    """
    day = (now - dt.timedelta(hours=24)).date()
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


class LiveFleet:
    """The simulated fleet advanced to wall-clock time, its latest samples pre-rendered."""

    def __init__(
        self,
        fleet: list[Server],
        seed: int,
        origin: dt.datetime,
        clock: Callable[[], float] = time.time,
        scenarios: Iterable[tuple[dt.datetime, dict]] = (),
    ):
        self.sim = Simulator(fleet, seed, origin)
        for at, request in scenarios:  # the same script as the backfill, so the two agree
            self.sim.schedule(at, request)
        self.clock = clock
        self.labels = label_sets(fleet)
        self.lock = threading.Lock()
        self.values: dict[str, np.ndarray] = {}
        self.step_time: dt.datetime | None = None
        self.body = b""
        self.render_seconds = 0.0
        self.refresh()

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def refresh(self) -> None:
        """Step the process up to the current 5-minute step and re-render if it moved."""
        with self.lock:
            target = self.sim.step_of(self.now())
            if target < 0:
                raise ContractError("the process origin is in the future")
            if self.sim.k > target:
                return
            while self.sim.k <= target:
                t, values, _ = self.sim.step()
            began = time.perf_counter()
            self.values, self.step_time = values, t
            text = exposition(self.sim.fleet, values, self.labels)
            text += (
                "# HELP linborg_generator_step_timestamp_seconds Start of the 5-minute step "
                "whose samples are served.\n"
                "# TYPE linborg_generator_step_timestamp_seconds gauge\n"
                f"linborg_generator_step_timestamp_seconds {t.timestamp():.0f}\n"
                "# HELP linborg_generator_servers Servers in the simulated fleet.\n"
                "# TYPE linborg_generator_servers gauge\n"
                f"linborg_generator_servers {len(self.sim.fleet)}\n"
            )
            self.body = text.encode()
            self.render_seconds = time.perf_counter() - began

    def metrics(self) -> bytes:
        """Return the current exposition text."""
        self.refresh()
        return self.body

    def scenario(self, request: dict) -> list[dict]:
        """Apply a scenario request; return the incidents it started.

        The request names its target with exactly one of ``server`` (a name), ``servers``
        (a list), ``profile`` or ``fleet: true``, plus ``scenario`` (healthy, degrading,
        critical) and optionally ``incident``, ``precursor_minutes``, ``duration_minutes``.
        """
        if not isinstance(request, dict):
            raise ContractError("bad scenario request: expected a JSON object")
        known = {
            "server",
            "servers",
            "profile",
            "fleet",
            "scenario",
            "incident",
            "precursor_minutes",
            "duration_minutes",
        }
        extra = sorted(set(request) - known)
        if extra:
            raise ContractError(f"bad scenario request: unknown keys {extra}")
        targets = [k for k in ("server", "servers", "profile", "fleet") if k in request]
        if len(targets) != 1:
            raise ContractError(
                "bad scenario request: give exactly one of server, servers, profile or fleet"
            )
        if "scenario" not in request:
            raise ContractError("bad scenario request: 'scenario' is required")
        fleet = self.sim.fleet
        if "server" in request:
            if not isinstance(request["server"], str):
                raise ContractError("bad scenario request: 'server' must be a name")
            names = [request["server"]]
        elif "servers" in request:
            names = request["servers"]
            if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
                raise ContractError("bad scenario request: 'servers' must be a list of names")
        elif "profile" in request:
            prof = request["profile"]
            if prof not in PROFILE_NAMES:
                raise ContractError(
                    f"bad scenario request: unknown profile {prof!r}; "
                    f"known profiles are: {', '.join(PROFILE_NAMES)}"
                )
            names = [s.name for s in fleet if s.profile == prof]
            if not names:
                raise ContractError(f"bad scenario request: the fleet has no {prof} servers")
        else:
            if request["fleet"] is not True:
                raise ContractError("bad scenario request: 'fleet' must be true")
            names = [s.name for s in fleet]
        self.refresh()
        with self.lock:
            started = self.sim.apply_scenario(
                names,
                request["scenario"],
                request.get("incident"),
                request.get("precursor_minutes"),
                request.get("duration_minutes"),
            )
        return [i.as_dict() for i in started]

    def incidents(self) -> list[dict]:
        """Return every incident label so far."""
        with self.lock:
            return [i.as_dict() for i in self.sim.incidents]


def make_handler(live: LiveFleet) -> type[BaseHTTPRequestHandler]:
    """Return a request handler class bound to ``live``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "linborg-generator"

        def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
            pass

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, doc) -> None:
            self._send(code, json.dumps(doc, indent=1).encode() + b"\n", "application/json")

        def do_GET(self):  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, live.metrics(), CONTENT_TYPE)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/incidents":
                self._json(200, live.incidents())
            elif path == "/fleet":
                self._json(200, [{"server": s.name, "profile": s.profile} for s in live.sim.fleet])
            else:
                self._json(404, {"error": f"no such path {path}"})

        def do_POST(self):  # noqa: N802 - the stdlib's name
            if self.path.split("?", 1)[0] != "/scenario":
                self._json(404, {"error": f"no such path {self.path}"})
                return
            try:
                raw = (self.headers.get("Content-Length") or "0").strip()
                if not raw.isdigit():
                    self.close_connection = True  # the body's end is unknown: do not read it
                    raise ContractError(
                        f"bad scenario request: Content-Length {raw[:20]!r} is not a whole "
                        "number of bytes"
                    )
                length = int(raw)
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise ContractError(
                        f"bad scenario request: body of {length} bytes, over {MAX_BODY_BYTES}"
                    )
                try:
                    request = json.loads(self.rfile.read(length) or b"null")
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise ContractError(f"bad scenario request: not valid JSON ({err})") from None
                except RecursionError:
                    raise ContractError("bad scenario request: JSON nested too deeply") from None
                started = live.scenario(request)
            except ContractError as err:
                self._json(400, {"error": str(err)})
                return
            self._json(200, {"started": started})

    return Handler


#: Largest scenario request body read (a scenario is a few hundred bytes).
MAX_BODY_BYTES = 65_536


def serve(live: LiveFleet, host: str, port: int) -> ThreadingHTTPServer:
    """Return a started HTTP server for ``live`` (serving in a daemon thread)."""
    httpd = ThreadingHTTPServer((host, port), make_handler(live))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="generator-http", daemon=True).start()
    return httpd
