"""The rolling in-memory window: the last 24 hours of every server's 14 metrics on the step grid.

Samples are placed at their 5-minute step (a misaligned sample goes to the step it falls in;
a late sample fills its step when it arrives). NaN, inf and out-of-range samples are counted
and left missing. Servers that stop reporting age out of the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from linborg.contract import METRIC_NAMES, METRICS_BY_NAME, STEP_SECONDS
from linborg.features import ENCODER_STEPS

_LO = np.array([METRICS_BY_NAME[m].min for m in METRIC_NAMES])
_HI = np.array([METRICS_BY_NAME[m].max for m in METRIC_NAMES])
#: Series up to this many samples (steady-state cycles fetch 3) are placed by a Python loop.
SHORT_SERIES = 16


@dataclass
class ServerWindow:
    """One server's window: values (ENCODER_STEPS, 14), NaN where missing."""

    profile: str
    profile_reason: str
    values: np.ndarray = field(
        default_factory=lambda: np.full((ENCODER_STEPS, len(METRIC_NAMES)), np.nan, np.float32)
    )
    first_step: int | None = None  # first step this server was seen at


class RollingWindow:
    """The last ENCODER_STEPS steps of every server, ending at ``end_step`` (inclusive)."""

    def __init__(self, end_step: int, max_servers: int | None = None):
        self.end_step = end_step
        self.servers: dict[str, ServerWindow] = {}
        self.invalid_samples = 0  # NaN, inf or out of range, since start
        #: Most servers held; samples of other servers are not kept (bounded memory).
        self.max_servers = max_servers
        #: Servers whose samples were not kept because the window was full (this cycle).
        self.over_limit: set[str] = set()

    @property
    def start_step(self) -> int:
        return self.end_step - ENCODER_STEPS + 1

    def advance(self, end_step: int) -> None:
        """Move the window's end to ``end_step``, dropping older steps."""
        shift = end_step - self.end_step
        if shift <= 0:
            return
        for w in self.servers.values():
            if shift >= ENCODER_STEPS:
                w.values[:] = np.nan
            else:
                w.values[:-shift] = w.values[shift:]
                w.values[-shift:] = np.nan
        self.end_step = end_step
        gone = [s for s, w in self.servers.items() if np.isnan(w.values).all()]
        for s in gone:
            del self.servers[s]

    def add(
        self,
        server: str,
        profile: str,
        profile_reason: str,
        metric_index: int,
        timestamps: np.ndarray,
        values: np.ndarray,
    ) -> None:
        """Place one series' samples (Unix seconds, values) into the window."""
        start = self.start_step
        if len(timestamps) <= SHORT_SERIES:
            self._add_short(server, profile, profile_reason, metric_index, timestamps, values)
            return
        steps = (np.asarray(timestamps, np.float64) // STEP_SECONDS).astype(np.int64)
        keep = (steps >= start) & (steps <= self.end_step)
        if not keep.any():
            return
        w = self._server(server, profile, profile_reason)
        if w is None:
            return
        steps, vals = steps[keep], np.asarray(values, np.float64)[keep]
        valid = np.isfinite(vals) & (vals >= _LO[metric_index]) & (vals <= _HI[metric_index])
        self.invalid_samples += int((~valid).sum())
        w.values[steps[valid] - start, metric_index] = vals[valid]
        first = int(steps.min())
        w.first_step = first if w.first_step is None else min(w.first_step, first)

    def _server(self, server: str, profile: str, profile_reason: str) -> ServerWindow | None:
        w = self.servers.get(server)
        if w is None:
            if self.max_servers is not None and len(self.servers) >= self.max_servers:
                self.over_limit.add(server)
                return None
            w = self.servers[server] = ServerWindow(profile, profile_reason)
        w.profile, w.profile_reason = profile, profile_reason
        return w

    def _add_short(self, server, profile, reason, j: int, timestamps, values) -> None:
        """Place a few samples with plain Python: far cheaper than numpy for steady cycles."""
        lo, hi, start, end = float(_LO[j]), float(_HI[j]), self.start_step, self.end_step
        pairs = zip(np.asarray(timestamps).tolist(), np.asarray(values).tolist(), strict=True)
        placed = [(int(t // STEP_SECONDS), v) for t, v in pairs]
        placed = [(k, v) for k, v in placed if start <= k <= end]
        if not placed:
            return
        w = self._server(server, profile, reason)
        if w is None:
            return
        column = w.values[:, j]
        first = w.first_step
        for k, v in placed:
            if first is None or k < first:
                first = k
            if not lo <= v <= hi:  # NaN, inf and out-of-range samples fail this test
                self.invalid_samples += 1
                continue
            column[k - start] = v
        w.first_step = first

    def arrays(self, names: list[str]) -> np.ndarray:
        """Return (len(names), ENCODER_STEPS, 14) copies of the named servers' windows."""
        if not names:
            return np.empty((0, ENCODER_STEPS, len(METRIC_NAMES)), np.float32)
        return np.stack([self.servers[s].values for s in names]).copy()


#: Format tag of the persisted window (``save_window``/``load_window``).
STATE_FORMAT = "linborg-window/1"


def save_window(
    path, window: RollingWindow, fetched_until: dict[str, int], fingerprint: str
) -> None:
    """Write the window to ``path`` (NumPy .npz, written to a temporary file then renamed).

    ``fingerprint`` names the configuration that filled it (queries, labels, shard): a window
    filled under another configuration is refused when read back.
    """
    import json
    import os
    from pathlib import Path

    path = Path(path)
    names = sorted(window.servers)
    values = (
        np.stack([window.servers[s].values for s in names])
        if names
        else np.empty((0, ENCODER_STEPS, len(METRIC_NAMES)), np.float32)
    )
    meta = {
        "format": STATE_FORMAT,
        "fingerprint": fingerprint,
        "end_step": window.end_step,
        "metrics": list(METRIC_NAMES),
        "fetched_until": fetched_until,
        "servers": [
            [s, window.servers[s].profile, window.servers[s].profile_reason,
             window.servers[s].first_step]
            for s in names
        ],
    }  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, values=values, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    os.replace(tmp, path)


def load_window(
    path, fingerprint: str, now_step: int, max_servers: int | None = None
) -> tuple[RollingWindow, dict[str, int]]:
    """Return (window, fetched_until) read from ``path``; raise ValueError saying why not.

    Refused: a missing or unreadable file, another format or metric list, another
    configuration's fingerprint, or a window that ended 24 hours or more before ``now_step``
    (nothing in it would still be in the window).
    """
    import json

    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            values = np.asarray(data["values"], np.float32)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    if meta.get("format") != STATE_FORMAT or meta.get("metrics") != list(METRIC_NAMES):
        raise ValueError(f"{path} is not a window of this version")
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} was written under another configuration")
    end = int(meta["end_step"])
    if now_step - end >= ENCODER_STEPS or end > now_step:
        raise ValueError(f"{path} is stale: it ends {(now_step - end) * 5} minutes ago")
    servers = meta["servers"]
    if values.shape != (len(servers), ENCODER_STEPS, len(METRIC_NAMES)):
        raise ValueError(f"{path} is corrupt: values of shape {values.shape}")
    window = RollingWindow(end, max_servers)
    for (name, profile, reason, first), v in zip(servers, values, strict=True):
        if max_servers is not None and len(window.servers) >= max_servers:
            break
        window.servers[name] = ServerWindow(profile, reason, v.copy(), first)
    fetched = {m: int(k) for m, k in meta.get("fetched_until", {}).items() if m in METRIC_NAMES}
    return window, fetched
