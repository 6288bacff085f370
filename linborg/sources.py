"""Read LINBORG history from Prometheus into the contract's wide table.

One PromQL expression per metric (by default the generator's series, ``linborg_<metric>``);
each result series names its server with ``server_label`` and its profile with
``profile_label``, or the profile is inferred from the hostname.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from linborg.contract import (
    METRIC_NAMES,
    METRICS_BY_NAME,
    PROFILE,
    PROFILE_NAMES,
    SERVER,
    STEP_SECONDS,
    TIMESTAMP,
    ProfileMatcher,
)
from linborg.prom import PrometheusClient

#: The default PromQL expression of each metric: the series the generator exposes.
DEFAULT_QUERIES: dict[str, str] = {m: METRICS_BY_NAME[m].wire_name for m in METRIC_NAMES}


def fetch_history(
    client: PrometheusClient,
    start: float,
    end: float,
    queries: dict[str, str] | None = None,
    server_label: str = "server",
    profile_label: str = "profile",
    matcher: ProfileMatcher | None = None,
    chunk_seconds: float = 86400,
    progress=None,
) -> pd.DataFrame:
    """Return the wide table of every metric from ``start`` to ``end`` (Unix seconds).

    Samples are aligned to the 5-minute grid; a metric with no series is left out, and a
    server missing a metric has NaN there (the contract's ``allow_missing`` form). Each metric
    is read in range queries of at most ``chunk_seconds`` (a day by default), so that no answer
    grows with the length of the history; ``progress(done, total)`` is called after each.
    """
    queries = queries or DEFAULT_QUERIES
    matcher = matcher or ProfileMatcher()
    start = float(np.ceil(start / STEP_SECONDS) * STEP_SECONDS)
    end = float(np.floor(end / STEP_SECONDS) * STEP_SECONDS)
    span = max(STEP_SECONDS, int(chunk_seconds) // STEP_SECONDS * STEP_SECONDS)
    windows = []
    a = start
    while a <= end:
        b = min(a + span - STEP_SECONDS, end)  # windows tile the steps exactly once
        windows.append((a, b))
        a = b + STEP_SECONDS
    columns: dict[str, pd.Series] = {}
    profiles: dict[str, str] = {}
    done = 0
    for metric, query in queries.items():
        parts = []
        for a, b in windows:
            result = client.query_range(query, a, b, STEP_SECONDS)
            parts += _series(result, server_label, profile_label, matcher, profiles)
            done += 1
            if progress:
                progress(done, len(windows) * len(queries))
        if parts:
            series = pd.concat(parts)
            columns[metric] = series[~series.index.duplicated(keep="last")]
    return _frame(columns, profiles)


def _series(result, server_label, profile_label, matcher, profiles) -> list[pd.Series]:
    """Return one Series per result series, indexed by (server, step); note their profiles."""
    parts = []
    for s in result:
        server = s.labels.get(server_label)
        if not server:
            continue
        prof = s.labels.get(profile_label)
        if prof not in PROFILE_NAMES:
            prof = matcher.match(server).profile
        profiles.setdefault(server, prof)
        index = pd.MultiIndex.from_arrays(
            [
                np.full(len(s.timestamps), server),
                (s.timestamps // STEP_SECONDS).astype(np.int64),
            ]
        )
        values = np.where(np.isfinite(s.values), s.values, np.nan)
        parts.append(pd.Series(values, index=index))
    return parts


def _frame(columns: dict[str, pd.Series], profiles: dict[str, str]) -> pd.DataFrame:
    if not columns:
        return pd.DataFrame(columns=[TIMESTAMP, SERVER, PROFILE, *METRIC_NAMES])
    frame = pd.DataFrame(columns).reset_index(names=[SERVER, "step"])
    frame.insert(0, TIMESTAMP, pd.to_datetime(frame.pop("step") * STEP_SECONDS, unit="s", utc=True))
    frame.insert(2, PROFILE, frame[SERVER].map(profiles))
    metric = METRICS_BY_NAME
    for m in columns:
        out = (frame[m] < metric[m].min) | (frame[m] > metric[m].max)
        frame.loc[out, m] = np.nan  # out-of-range samples count as missing
    return frame.sort_values([SERVER, TIMESTAMP], ignore_index=True)
