"""The forecast path API: the latest forecast paths through a read-only Prometheus HTTP API.

Prometheus cannot store samples in the future, so the exporter answers a small subset of the
Prometheus query API itself, from the snapshot of the last completed cycle. A Prometheus-type
Grafana data source pointed at the exporter then draws the forecast fan beyond "now".

One series family is served, ``linborg_forecast_path{server, profile, metric, q}``: the 96
forecast steps of each present metric of each forecast server, at their own future timestamps
(step k of a cycle that ended at step ``end_step`` is at ``(end_step + k + 1) * 300`` seconds).
A stale snapshot (older than ``max_snapshot_age``) serves nothing.

Queries may only be plain vector selectors, ``name{label op "value", ...}`` with the
operators ``=``, ``!=``, ``=~`` and ``!~`` (regular expressions fully anchored), and constant
scalar arithmetic such as Grafana's health check ``1+1``. Anything else is refused with HTTP
400 and a Prometheus-style ``bad_data`` error; nothing is evaluated with ``eval``.

Every request is bounded (the ``api.*`` configuration keys): it has a deadline (503,
``timeout``), at most a few are evaluated at once (503, ``unavailable``, for the rest), and an
answer holds a capped number of samples (422, ``execution``). /metrics and /healthz share none
of these limits.

The query language subset is parsed by linborg.exporter.promql; durations (``step``,
``timeout``) by linborg.duration, the one duration parser of the repo.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable

import numpy as np

from linborg.contract import METRIC_NAMES, NAMESPACE, STEP_SECONDS
from linborg.duration import duration_ms
from linborg.exporter.promql import (
    _LABEL_NAME,
    Matcher,
    ParseError,
    Scalar,
    Selector,
    parse_query,
    parse_selector,
)

log = logging.getLogger("linborg.exporter")

#: The one series family this API serves.
SERIES_NAME = f"{NAMESPACE}_forecast_path"
#: Value of the ``q`` label of each quantile, in the order of the forecast's last axis.
QUANTILE_LABELS = ("0.1", "0.5", "0.9")
SERIES_HELP = (
    "Forecast of a LINBORG metric at quantile q for a future 5-minute step, from the last "
    "cycle (served only by the forecast path API)."
)
#: The Prometheus version whose API this mirrors (Grafana reads it from buildinfo).
PROMETHEUS_API_VERSION = "2.42.0"
#: How far back a query looks for the latest sample, as Prometheus' default lookback delta.
LOOKBACK_MS = 5 * 60 * 1000
#: Prometheus refuses range queries with more points per series than this.
MAX_POINTS_PER_SERIES = 11_000
#: A request waits at most this long for one of the api.max_concurrency evaluation slots: long
#: enough for a Grafana dashboard's burst of panel queries (a few milliseconds each), short
#: enough that a flood is refused at once instead of piling up.
QUEUE_WAIT_SECONDS = 1.0
#: The limits a request can be refused at (the api.* keys), as linborg_exporter_api_requests_
#: refused_total's reason label.
API_LIMITS = ("max_concurrency", "max_samples", "timeout")
#: The deadline is checked before evaluation, after the series are selected, and every this
#: many samples while the answer is built (about 10 ms of work each here).
DEADLINE_CHECK_SAMPLES = 1000
#: Largest POST body read, in bytes.
MAX_BODY_BYTES = 1 << 20

STEP_MS = STEP_SECONDS * 1000
#: The earliest and latest times Prometheus accepts (its minTime and maxTime), in ms.
MIN_TIME_MS = -(2**63) // 1_000_000
MAX_TIME_MS = (2**63 - 1) // 1_000_000
#: HTTP status of each Prometheus errorType (web/api/v1 of Prometheus).
STATUS_OF = {
    "bad_data": 400,
    "not_found": 404,
    "execution": 422,
    "internal": 500,
    "timeout": 503,
    "unavailable": 503,
}


class APIError(Exception):
    """Raise to answer with a Prometheus-style error: ``kind`` is its errorType."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class LimitError(APIError):
    """Raise when a request goes past a limit; ``limit`` names it (the api.* key)."""

    def __init__(self, kind: str, limit: str, message: str):
        super().__init__(kind, message)
        self.limit = limit


# --- Parameters, parsed like Prometheus ------------------------------------------------------

_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})\Z", re.IGNORECASE
)


def parse_time_ms(text: str) -> int:
    """Return a Unix timestamp or RFC 3339 time as milliseconds; raise ValueError otherwise."""
    if _FLOAT.match(text):
        try:
            d = decimal.Decimal(text)
            if abs(d) > MAX_TIME_MS // 1000 + 1:
                raise ValueError(text)
        except decimal.DecimalException:
            raise ValueError(text) from None
        whole = int(d)
        frac = (d - whole) * 1000
        ms = whole * 1000 + int(frac.quantize(decimal.Decimal(1), decimal.ROUND_HALF_UP))
    elif _RFC3339.match(text):
        t = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        ms = (t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    else:
        raise ValueError(text)
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise ValueError(text)
    return ms


def parse_duration_ns(text: str) -> int:
    """Return float seconds or a Prometheus duration ("5m", "1h30m") in nanoseconds.

    Raise OverflowError for a duration beyond int64 nanoseconds, ValueError for other text.
    """
    if _FLOAT.match(text):
        try:
            ns = decimal.Decimal(text) * 1_000_000_000
            if not -(2**63) <= ns < 2**63:
                raise OverflowError(text)
        except decimal.DecimalException:
            raise OverflowError(text) from None
        return int(ns)
    ms = duration_ms(text)
    if ms * 1_000_000 >= 2**63:
        raise OverflowError(text)
    return ms * 1_000_000


def _time_param(params, name: str, default: int | None = None) -> int:
    text = _param(params, name)
    if text == "" and default is not None:
        return default
    try:
        return parse_time_ms(text)
    except ValueError:
        raise APIError(
            "bad_data", f'invalid parameter "{name}": cannot parse "{text}" to a valid timestamp'
        ) from None


def _param(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _timeout_param(params, deadline: Deadline) -> None:
    """Bring the deadline forward to the request's ``timeout`` parameter, as Prometheus does."""
    text = _param(params, "timeout")
    if not text:
        return
    try:
        seconds = parse_duration_ns(text) / 1e9
    except (ValueError, OverflowError):
        raise APIError(
            "bad_data", f'invalid parameter "timeout": cannot parse "{text}" to a valid duration'
        ) from None
    deadline.lower(seconds)


def _query_param(params, name: str = "query") -> Selector | Scalar:
    text = _param(params, name)
    try:
        return parse_query(text)
    except ParseError as err:
        raise APIError("bad_data", f'invalid parameter "{name}": {err.describe(text)}') from None


def _match_params(params) -> list[Selector]:
    out = []
    for text in params.get("match[]", []):
        try:
            out.append(parse_selector(text))
        except ParseError as err:
            raise APIError(
                "bad_data", f'invalid parameter "match[]": {err.describe(text)}'
            ) from None
    return out


# --- Wire formats ----------------------------------------------------------------------------


def format_value(v: float) -> str:
    """Return a sample value as Prometheus writes it: shortest decimal, no exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(float(v))
    if "e" in text:
        text = format(decimal.Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _ts(ms: int) -> int | float:
    """Return a millisecond timestamp as the JSON number of seconds Prometheus writes."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


# --- The served series -----------------------------------------------------------------------


class ForecastPaths:
    """The series a snapshot serves: present metrics of forecast servers, fresh snapshots only."""

    def __init__(self, snap=None):
        if snap is None or snap.forecast is None or not len(snap.servers):
            self.servers: tuple[str, ...] = ()
            self.profiles: tuple[str, ...] = ()
            self.values = np.zeros((0, len(METRIC_NAMES), 0, len(QUANTILE_LABELS)), np.float32)
            self.present = np.zeros((0, len(METRIC_NAMES)), bool)
            self.first_ms = 0
            return
        self.servers = tuple(snap.servers)
        self.profiles = tuple(snap.profiles)
        self.values = snap.forecast
        self.present = np.asarray(snap.present, bool)
        self.first_ms = (snap.end_step + 1) * STEP_MS

    @property
    def steps(self) -> int:
        return self.values.shape[2]

    def select(self, selectors: Iterable[Selector]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (server, metric, quantile) indices of the series any selector matches.

        They come sorted by label set, as Prometheus sorts them.
        """
        mask = np.zeros((len(self.servers), len(METRIC_NAMES), len(QUANTILE_LABELS)), bool)
        for sel in selectors:
            mask |= self._mask(sel)
        si, mj, qk = np.nonzero(mask)
        order = sorted(
            range(len(si)),
            key=lambda n: (
                METRIC_NAMES[mj[n]],
                self.profiles[si[n]],
                QUANTILE_LABELS[qk[n]],
                self.servers[si[n]],
            ),
        )
        return si[order], mj[order], qk[order]

    def _mask(self, sel: Selector) -> np.ndarray:
        on_server = np.ones(len(self.servers), bool)
        on_metric = np.ones(len(METRIC_NAMES), bool)
        on_q = np.ones(len(QUANTILE_LABELS), bool)
        for m in sel.matchers:
            if m.name == "server":
                on_server &= np.fromiter(map(m.matches, self.servers), bool, len(self.servers))
            elif m.name == "profile":
                ok = {p: m.matches(p) for p in set(self.profiles)}
                on_server &= np.fromiter((ok[p] for p in self.profiles), bool, len(self.servers))
            elif m.name == "metric":
                on_metric &= np.fromiter(map(m.matches, METRIC_NAMES), bool, len(METRIC_NAMES))
            elif m.name == "q":
                on_q &= np.fromiter(map(m.matches, QUANTILE_LABELS), bool, len(QUANTILE_LABELS))
            elif not m.matches(SERIES_NAME if m.name == "__name__" else ""):
                on_server[:] = False  # a missing label is the empty string, as in Prometheus
        mask = self.present & on_server[:, None] & on_metric[None, :]
        return mask[:, :, None] & on_q[None, None, :]

    def labels(self, s: int, j: int, k: int) -> dict[str, str]:
        """Return the label set of one series, names sorted."""
        return {
            "__name__": SERIES_NAME,
            "metric": METRIC_NAMES[j],
            "profile": self.profiles[s],
            "q": QUANTILE_LABELS[k],
            "server": self.servers[s],
        }

    def step_at(self, t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the latest step at or before each time within the lookback, and which have one."""
        k = np.floor_divide(t_ms - self.first_ms, STEP_MS)
        k = np.minimum(k, self.steps - 1)
        ok = (k >= 0) & (t_ms - (self.first_ms + k * STEP_MS) <= LOOKBACK_MS)
        return np.where(ok, k, 0), ok


# --- The API ---------------------------------------------------------------------------------


class Deadline:
    """When one API request must be answered by; ``check`` raises once that time has passed."""

    def __init__(self, seconds: float, timer: Callable[[], float] = time.monotonic):
        self.timer = timer
        self.seconds = seconds
        self.at = timer() + seconds

    def lower(self, seconds: float) -> None:
        """Bring the deadline forward to ``seconds`` after now (a request's timeout parameter)."""
        if seconds < self.seconds:
            self.seconds = seconds
            self.at = min(self.at, self.timer() + seconds)

    def left(self) -> float:
        return self.at - self.timer()

    def check(self) -> None:
        if self.timer() > self.at:
            raise LimitError(
                "timeout",
                "timeout",
                f"query timed out in expression evaluation (the deadline is {self.seconds:g}s; "
                "api.timeout, or the request's timeout parameter)",
            )


class ForecastPathAPI:
    """Answer /api/v1/... requests from the latest snapshot of ``source``.

    ``source`` has ``snapshot`` and ``config`` (the Exporter) and, optionally, ``stats`` (the
    exporter's Stats, where requests and refusals are counted); ``clock`` says what now is and
    ``timer`` measures deadlines. Each request has the deadline ``api.timeout``; at most
    ``api.max_concurrency`` are evaluated at once (one more waits up to QUEUE_WAIT_SECONDS, then
    is refused); an answer holds at most ``api.max_samples`` samples.
    """

    def __init__(
        self,
        source,
        clock: Callable[[], float] = time.time,
        build: str = "dev",
        timer: Callable[[], float] = time.monotonic,
    ):
        self.source = source
        self.clock = clock
        self.timer = timer
        self.build = build
        config = source.config
        self.timeout = config.api_timeout_seconds
        self.max_concurrency = config.api_max_concurrency
        self.max_samples = config.api_max_samples
        self.slots = threading.BoundedSemaphore(self.max_concurrency)
        self.stats = getattr(source, "stats", None)
        self._count_lock = threading.Lock()
        self.routes = {
            "/api/v1/query": self.query,
            "/api/v1/query_range": self.query_range,
            "/api/v1/series": self.series,
            "/api/v1/labels": self.labels,
            "/api/v1/metadata": self.metadata,
            "/api/v1/query_exemplars": self.query_exemplars,
            "/api/v1/status/buildinfo": self.buildinfo,
            "/api/v1/rules": lambda params, now_ms, deadline: {"groups": []},
            "/api/v1/alerts": lambda params, now_ms, deadline: {"alerts": []},
        }

    def paths(self, now: float) -> ForecastPaths:
        """Return the series to serve at ``now``: none once the snapshot is stale."""
        snap = self.source.snapshot
        if snap is None or now - snap.time > self.source.config.max_snapshot_age_seconds:
            return ForecastPaths()
        return ForecastPaths(snap)

    def serve(self, method: str, target: str, headers, rfile) -> tuple[int, bytes]:
        """Answer one HTTP request (the handler's path, headers and body stream) as JSON."""
        path, _, query = target.partition("?")
        body = b""
        if method == "POST":
            try:
                length = int(headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                return _error("bad_data", "missing, invalid or too large Content-Length")
            body = rfile.read(length)
        return self.answer(method, path, query, body, headers.get("Content-Type", ""))

    def _count(self, refused: str | None = None) -> None:
        if self.stats is None:
            return
        with self._count_lock:
            self.stats.api_requests += 1
            if refused:
                self.stats.api_refused[refused] = self.stats.api_refused.get(refused, 0) + 1

    def answer(
        self, method: str, path: str, query: str = "", body: bytes = b"", content_type: str = ""
    ) -> tuple[int, bytes]:
        """Answer GET or POST ``path`` with its URL query and form body; return status, JSON.

        The request waits for one of the ``api.max_concurrency`` slots at most
        QUEUE_WAIT_SECONDS (and never past its deadline), else it is answered 503.
        """
        deadline = Deadline(self.timeout, self.timer)
        if not self.slots.acquire(timeout=max(0.0, min(QUEUE_WAIT_SECONDS, deadline.left()))):
            self._count("max_concurrency")
            return _error(
                "unavailable",
                f"too many concurrent requests: at most {self.max_concurrency} are evaluated at "
                "once (api.max_concurrency); try again",
            )
        try:
            code, body, refused = self._answer(method, path, query, body, content_type, deadline)
        finally:
            self.slots.release()
        self._count(refused)
        return code, body

    def _answer(self, method, path, query, body, content_type, deadline: Deadline):
        """Return status, JSON and the limit that refused the request (None if none did)."""
        try:
            params = urllib.parse.parse_qs(query, keep_blank_values=True)
            if method == "POST" and content_type.split(";")[0].strip().lower() == (
                "application/x-www-form-urlencoded"
            ):
                form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
                for name, values in params.items():  # body values first, as Go's ParseForm
                    form.setdefault(name, []).extend(values)
                params = form
            path = urllib.parse.unquote(path)
            now_ms = round(self.clock() * 1000)
            if path.startswith("/api/v1/label/") and path.endswith("/values"):
                name = path[len("/api/v1/label/") : -len("/values")]
                data = self.label_values(name, params, now_ms, deadline)
            elif path in self.routes:
                data = self.routes[path](params, now_ms, deadline)
            else:
                raise APIError("not_found", f"no such endpoint: {path}")
            deadline.check()  # the JSON encoding below is not interrupted: the sample cap bounds it
        except LimitError as err:
            return (*_error(err.kind, err.message), err.limit)
        except APIError as err:
            return (*_error(err.kind, err.message), None)
        except UnicodeDecodeError:
            return (*_error("bad_data", "the request body is not UTF-8"), None)
        except Exception:  # a bug here must not take the exporter down, nor hang the client
            log.exception("forecast path API: %s %s failed", method, path)
            return (*_error("internal", "internal error; see the exporter's log"), None)
        text = json.dumps(
            {"status": "success", "data": data}, separators=(",", ":"), allow_nan=False
        )
        return 200, text.encode(), None

    def _cap(self, series: int, steps: int = 1) -> None:
        """Refuse an answer of more than ``api.max_samples`` samples before it is built."""
        if series * steps > self.max_samples:
            raise LimitError(
                "execution",
                "max_samples",
                "query processing would load too many samples into memory in query execution "
                f"({series} series x {steps} steps; at most {self.max_samples:,} samples, "
                "api.max_samples)",
            )

    # Endpoints: each takes the request parameters, now (ms) and the deadline; returns "data".

    def query(self, params, now_ms: int, deadline: Deadline):
        _timeout_param(params, deadline)
        expr = _query_param(params)
        t_ms = _time_param(params, "time", default=now_ms)
        if isinstance(expr, Scalar):
            return {"resultType": "scalar", "result": [_ts(t_ms), format_value(expr.value)]}
        paths = self.paths(now_ms / 1000)
        si, mj, qk = paths.select([expr])
        deadline.check()
        k, ok = paths.step_at(np.array([t_ms], np.int64))
        result = []
        if ok[0] and len(si):
            self._cap(len(si))
            values = paths.values[si, mj, k[0], qk].tolist()
            for n, v in enumerate(values):
                if n % DEADLINE_CHECK_SAMPLES == 0:
                    deadline.check()
                if not math.isnan(v):
                    labels = paths.labels(si[n], mj[n], qk[n])
                    result.append({"metric": labels, "value": [_ts(t_ms), format_value(v)]})
        return {"resultType": "vector", "result": result}

    def query_range(self, params, now_ms: int, deadline: Deadline):
        _timeout_param(params, deadline)
        expr = _query_param(params)
        start = _time_param(params, "start")
        end = _time_param(params, "end")
        if end < start:
            raise APIError("bad_data", "end timestamp must not be before start time")
        step_text = _param(params, "step")
        try:
            step_ns = parse_duration_ns(step_text)
        except OverflowError:
            raise APIError(
                "bad_data",
                f'invalid parameter "step": cannot parse "{step_text}" to a valid duration. '
                "It overflows int64",
            ) from None
        except ValueError:
            raise APIError(
                "bad_data",
                f'invalid parameter "step": cannot parse "{step_text}" to a valid duration',
            ) from None
        step_ms = step_ns // 1_000_000
        if step_ms <= 0:
            raise APIError(
                "bad_data",
                "zero or negative query resolution step widths are not accepted. "
                "Try a positive integer",
            )
        if (end - start) * 1_000_000 // step_ns > MAX_POINTS_PER_SERIES:
            raise APIError(
                "bad_data",
                f"exceeded maximum resolution of {MAX_POINTS_PER_SERIES:,} points per timeseries. "
                "Try decreasing the query resolution (?step=XX)",
            )
        times = np.arange(start, end + 1, step_ms, dtype=np.int64)
        if isinstance(expr, Scalar):
            v = format_value(expr.value)
            values = [[_ts(t), v] for t in times.tolist()]
            return {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}
        paths = self.paths(now_ms / 1000)
        si, mj, qk = paths.select([expr])
        deadline.check()
        k, ok = paths.step_at(times)
        times, k = times[ok], k[ok]
        self._cap(len(si), len(times))
        result = []
        if len(times):
            stamps = [_ts(t) for t in times.tolist()]
            block = paths.values[si[:, None], mj[:, None], k[None, :], qk[:, None]].tolist()
            every = max(1, DEADLINE_CHECK_SAMPLES // len(times))  # rows between checks
            for n, row in enumerate(block):
                if n % every == 0:
                    deadline.check()
                values = [[t, format_value(v)] for t, v in zip(stamps, row, strict=True) if v == v]
                if values:
                    result.append({"metric": paths.labels(si[n], mj[n], qk[n]), "values": values})
        return {"resultType": "matrix", "result": result}

    def _time_range(self, params) -> None:
        """Check optional start and end like Prometheus (the series are not cut by them)."""
        start = _time_param(params, "start", default=MIN_TIME_MS)
        end = _time_param(params, "end", default=MAX_TIME_MS)
        if end < start:
            raise APIError("bad_data", "end timestamp must not be before start time")

    def _listed(self, params, now_ms: int, deadline: Deadline, need_match: bool = False):
        self._time_range(params)
        selectors = _match_params(params)
        if need_match and not selectors:
            raise APIError("bad_data", "no match[] parameter provided")
        paths = self.paths(now_ms / 1000)
        if not selectors:
            selectors = [Selector((Matcher("__name__", "=", SERIES_NAME),))]
        selected = paths.select(selectors)
        deadline.check()
        return paths, selected

    def series(self, params, now_ms: int, deadline: Deadline):
        paths, (si, mj, qk) = self._listed(params, now_ms, deadline, need_match=True)
        self._cap(len(si))  # a label set weighs more than a sample
        out = []
        for n, (s, j, k) in enumerate(zip(si, mj, qk, strict=True)):
            if n % DEADLINE_CHECK_SAMPLES == 0:
                deadline.check()
            out.append(paths.labels(s, j, k))
        return out

    def labels(self, params, now_ms: int, deadline: Deadline):
        paths, (si, _, _) = self._listed(params, now_ms, deadline)
        return ["__name__", "metric", "profile", "q", "server"] if len(si) else []

    def label_values(self, name: str, params, now_ms: int, deadline: Deadline):
        if not _LABEL_NAME.match(name):
            raise APIError("bad_data", f'invalid label name: "{name}"')
        paths, (si, mj, qk) = self._listed(params, now_ms, deadline)
        if not len(si):
            return []
        if name == "__name__":
            return [SERIES_NAME]
        if name == "server":
            return sorted({paths.servers[s] for s in si})
        if name == "profile":
            return sorted({paths.profiles[s] for s in si})
        if name == "metric":
            return sorted({METRIC_NAMES[j] for j in mj})
        if name == "q":
            return sorted({QUANTILE_LABELS[k] for k in qk})
        return []

    def metadata(self, params, now_ms: int, deadline: Deadline):
        wanted = _param(params, "metric")
        limit = _param(params, "limit")
        if limit and not re.fullmatch(r"[+-]?[0-9]+", limit):
            raise APIError("bad_data", "limit must be a number")
        if (wanted and wanted != SERIES_NAME) or (limit and int(limit) == 0):
            return {}
        return {SERIES_NAME: [{"type": "gauge", "help": SERIES_HELP, "unit": ""}]}

    def query_exemplars(self, params, now_ms: int, deadline: Deadline):
        _query_param(params)
        self._time_range(params)
        return []

    def buildinfo(self, params, now_ms: int, deadline: Deadline):
        return {
            "version": PROMETHEUS_API_VERSION,
            "revision": f"linborg-{self.build}",
            "branch": "linborg-forecast-path-api",
            "buildUser": "linborg",
            "buildDate": "",
            "goVersion": "none (the LINBORG exporter's forecast path API, Python)",
        }


def _error(kind: str, message: str) -> tuple[int, bytes]:
    body = {"status": "error", "errorType": kind, "error": message}
    return STATUS_OF[kind], json.dumps(body, separators=(",", ":")).encode()
