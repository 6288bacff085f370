"""Fakes shared by the exporter tests: a Prometheus that answers from a simulated history and a
model that forecasts the last value, with the fleet and clock they use."""

from __future__ import annotations

import datetime as dt

import numpy as np

from linborg.features import HORIZON_STEPS, fill_window
from linborg.generator.fleet import build_fleet
from linborg.model import Forecast
from linborg.prom import PrometheusError, Series

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
FLEET = build_fleet({"web_api": 2, "database": 2, "ml_compute": 2})


class FakePrometheus:
    """Answers query_range from a simulated history; can be told to fail."""

    def __init__(self, frame):
        self.frame = frame
        self.down = False  # refuses connections
        self.broken = False  # answers HTTP 503
        self.calls = []
        self.bytes_received = 0
        self.hidden: set[str] = set()  # servers whose series are gone
        self.hidden_metrics: set[tuple[str, str]] = set()  # (server, metric) gone

    def query_range(self, query, start, end, step):
        self.calls.append((query, start, end))
        if self.down:
            raise PrometheusError("cannot reach http://fake: refused", unreachable=True)
        if self.broken:
            raise PrometheusError("http://fake answered HTTP 503: service unavailable")
        metric = query.removeprefix("linborg_")
        ts = self.frame["timestamp"].astype("int64") // 10**6  # microseconds -> seconds
        part = self.frame[(ts >= start) & (ts <= end) & ~self.frame["server"].isin(self.hidden)]
        out = []
        for (server, profile), g in part.groupby(["server", "profile"], observed=True):
            if (server, metric) in self.hidden_metrics:
                continue
            t = g["timestamp"].astype("int64").to_numpy() // 10**6
            out.append(
                Series(
                    {"server": server, "profile": profile}, t.astype(float), g[metric].to_numpy()
                )
            )
            self.bytes_received += 40 * len(g)
        return out


class FakeModel:
    """Forecasts the last value with a +-1 band: a stand-in for the TFT in unit tests."""

    def __init__(self):
        self.batches = []
        self.timezones = []
        self.servers = []

    def predict(self, values, profiles, end_step, timezone="UTC", servers=None):
        self.batches.append(len(values))
        self.timezones.append(timezone)
        self.servers.append(servers)
        filled, present, completeness = fill_window(values)
        last = filled[:, -1, :]
        out = np.repeat(last[:, :, None, None], HORIZON_STEPS, axis=2)
        out = np.concatenate([out - 1, out, out + 1], axis=3)
        out = np.where(present[:, :, None, None] > 0, out, np.nan)
        return Forecast(out.astype(np.float32), present > 0, completeness)


def at(hours: float) -> float:
    return (START + dt.timedelta(hours=hours)).timestamp() + 30
