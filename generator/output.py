"""Run the simulator into a history table, Parquet, OpenMetrics backfill and text exposition."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from linborg.contract import (
    CONTRACT_VERSION,
    METRIC_NAMES,
    METRICS,
    PROFILE,
    PROFILE_NAMES,
    SERVER,
    STATE,
    STATES,
    STEP_SECONDS,
    TIMESTAMP,
    ContractError,
)
from linborg.generator.fleet import Server
from linborg.generator.simulate import Incident, Simulator, align
from linborg.parquet import write_metrics

#: Label added to backfilled series so they match what Prometheus scrapes from the live endpoint.
DEFAULT_JOB = "linborg-generator"


def parse_time(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """Parse an ISO-8601 time or 'now-24h' / 'now-30d' into an aligned UTC datetime."""
    now = now or dt.datetime.now(dt.UTC)
    text = text.strip()
    if text.startswith("now"):
        rest = text[3:]
        if not rest:
            return align(now)
        units = {"m": 60, "h": 3600, "d": 86400}
        if rest[0] not in "+-" or rest[-1] not in units or not rest[1:-1].isdigit():
            raise ContractError(f"bad time '{text}': use ISO-8601 or now-<N>m|h|d")
        sign = -1 if rest[0] == "-" else 1
        return align(now + dt.timedelta(seconds=sign * int(rest[1:-1]) * units[rest[-1]]))
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ContractError(f"bad time '{text}': use ISO-8601 or now-<N>m|h|d") from None
    return align(t)


def simulate(
    fleet: list[Server],
    seed: int,
    start: dt.datetime,
    steps: int,
    progress: bool = False,
    scenarios: Iterable[tuple[dt.datetime, dict]] = (),
    incident_rate: float = 1.0,
) -> tuple[pd.DataFrame, list[Incident], Simulator]:
    """Return (long table, incident labels, simulator) for ``steps`` steps from ``start``.

    ``scenarios``: (time, request) pairs applied when the simulation reaches each time (see
    ``Simulator.schedule``), e.g. an incident scripted for a demo or a test.
    ``incident_rate``: multiplier of the profiles' random incidents per day.
    """
    if steps < 1:
        raise ContractError(f"nothing to generate: {steps} steps")
    sim = Simulator(fleet, seed, start, incident_rate)
    for at, request in scenarios:
        sim.schedule(at, request)
    n = len(fleet)
    values = {m: np.empty((n, steps)) for m in METRIC_NAMES}
    states = np.empty((n, steps), np.int8)
    began = time.monotonic()
    # On a terminal the progress line rewrites itself; in a log it is one line per day.
    tty = progress and sys.stderr.isatty()
    start_of_line, end_of_line = ("\r", "") if tty else ("", "\n")
    for j in range(steps):
        _, row, state = sim.step()
        for m in METRIC_NAMES:
            values[m][:, j] = row[m]
        states[:, j] = state
        if progress and ((j + 1) % 288 == 0 or j == steps - 1):  # after each day, and at the end
            elapsed = time.monotonic() - began
            eta = elapsed / (j + 1) * (steps - j - 1)
            print(
                f"{start_of_line}generate: day {(j + 288) // 288}/{(steps + 287) // 288}, "
                f"{elapsed:.1f}s elapsed, ETA {eta:.1f}s",
                end=end_of_line,
                file=sys.stderr,
                flush=True,
            )
    if tty:
        print(file=sys.stderr)
    times = pd.date_range(sim.origin, periods=steps, freq=f"{STEP_SECONDS}s", tz="UTC")
    frame = pd.DataFrame(
        {
            TIMESTAMP: times.take(np.tile(np.arange(steps), n)),
            SERVER: pd.Categorical(np.repeat([s.name for s in fleet], steps)),
            PROFILE: pd.Categorical(np.repeat([s.profile for s in fleet], steps), PROFILE_NAMES),
            STATE: pd.Categorical.from_codes(states.reshape(-1), STATES),
            **{m: values[m].reshape(-1) for m in METRIC_NAMES},
        }
    )
    return frame, list(sim.incidents), sim


def history_metadata(
    fleet: list[Server],
    seed: int,
    start: dt.datetime,
    steps: int,
    incidents: list[Incident],
    incident_rate: float = 1.0,
) -> dict:
    """Return the metadata stored with a history file."""
    counts: dict[str, int] = {}
    for s in fleet:
        counts[s.profile] = counts.get(s.profile, 0) + 1
    end = start + dt.timedelta(seconds=steps * STEP_SECONDS)
    return {
        "contract_version": CONTRACT_VERSION,
        "generator": "linborg.generator",
        "seed": seed,
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "step_seconds": STEP_SECONDS,
        "fleet": counts,
        "servers": len(fleet),
        "incident_rate": incident_rate,
        "incidents": [i.as_dict() for i in incidents],
    }


def write_history(
    path: str | Path,
    fleet: list[Server],
    seed: int,
    start: dt.datetime,
    days: float,
    progress: bool = False,
    incident_rate: float = 1.0,
) -> tuple[Path, dict]:
    """Generate ``days`` of history and write the Parquet file plus an incidents CSV beside it.

    ``incident_rate`` multiplies the profiles' random incidents per day (training fleets may
    use more incidents than a real fleet has, to show the model more precursor ramps).
    """
    steps = int(round(days * 86400 / STEP_SECONDS))
    start = align(start)
    frame, incidents, _ = simulate(fleet, seed, start, steps, progress, incident_rate=incident_rate)
    meta = history_metadata(fleet, seed, start, steps, incidents, incident_rate)
    path = write_metrics(frame, path, meta)
    labels = pd.DataFrame([i.as_dict() for i in incidents], columns=list(INCIDENT_COLUMNS))
    labels.to_csv(incidents_path(path), index=False)
    return path, meta


INCIDENT_COLUMNS = (
    "server",
    "profile",
    "type",
    "metric",
    "has_precursor",
    "precursor_start",
    "onset",
    "end",
    "source",
)


def incidents_path(history: str | Path) -> Path:
    """Return where the incident labels of a history file are written."""
    history = Path(history)
    return history.with_name(history.stem + ".incidents.csv")


# --- Prometheus text ------------------------------------------------------------------------


def format_values(values: np.ndarray) -> list[str]:
    """Return sample values as the text both the backfill and the live endpoint use."""
    return np.char.mod("%.10g", values).tolist()


def label_sets(fleet: Iterable[Server], job: str | None = None) -> list[str]:
    """Return the '{...}' label text of each server, in fleet order."""
    extra = f',job="{job}"' if job else ""
    return [f'{{server="{s.name}",profile="{s.profile}"{extra}}}' for s in fleet]


def family_header(name: str) -> str:
    """Return the HELP and TYPE lines of one LINBORG metric family."""
    m = next(m for m in METRICS if m.name == name)
    return f"# HELP {m.wire_name} {m.help} Unit: {m.unit}.\n# TYPE {m.wire_name} gauge\n"


def write_openmetrics(
    path: str | Path,
    fleet: list[Server],
    seed: int,
    start: dt.datetime,
    end: dt.datetime,
    job: str = DEFAULT_JOB,
    scenarios: Iterable[tuple[dt.datetime, dict]] = (),
) -> tuple[Path, int]:
    """Write the history from ``start`` to ``end`` (inclusive) as OpenMetrics for backfill.

    Returns (path, number of steps). Load it with
    ``promtool tsdb create-blocks-from openmetrics FILE DATA_DIR``.
    """
    start, end = align(start), align(end)
    steps = int((end - start).total_seconds()) // STEP_SECONDS + 1
    if steps < 1:
        raise ContractError(f"backfill end {end} is before its start {start}")
    frame, _, _ = simulate(fleet, seed, start, steps, scenarios=scenarios)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = label_sets(fleet, job)
    stamps = [str(int(t.timestamp())) for t in pd.date_range(start, periods=steps, freq="300s")]
    n = len(fleet)
    with path.open("w") as out:
        for m in METRICS:
            out.write(family_header(m.name))
            text = format_values(frame[m.name].to_numpy())
            lines = []
            for i in range(n):
                head = m.wire_name + labels[i] + " "
                row = text[i * steps : (i + 1) * steps]
                lines.append(
                    "\n".join(head + v + " " + s for v, s in zip(row, stamps, strict=True))
                )
            out.write("\n".join(lines))
            out.write("\n")
        out.write("# EOF\n")
    return path, steps


def exposition(fleet: list[Server], values: dict[str, np.ndarray], labels: list[str]) -> str:
    """Return the 14 metrics of every server as Prometheus text exposition format."""
    parts = []
    for m in METRICS:
        parts.append(family_header(m.name))
        head = m.wire_name
        parts.append(
            "\n".join(
                head + lab + " " + v
                for lab, v in zip(labels, format_values(values[m.name]), strict=True)
            )
        )
        parts.append("\n")
    return "".join(parts)


def write_heldout(
    path: str | Path,
    train_seed: int,
    train_start: dt.datetime,
    train_days: float,
    days: float,
    seed: int,
    composition: dict | None = None,
    start: dt.datetime | None = None,
) -> tuple[Path, dict]:
    """Write a held-out set for evaluation.

    With ``start``: one fleet of ``composition`` drawn from ``seed``, ``days`` from ``start``;
    every server is new to a model trained on another seed, whatever its hostname.

    Without: the ``days`` after a training history ends. It holds the training fleet continued
    past its training window (servers seen in training, later time) and a second fleet of the
    same mix drawn from another ``seed`` and numbered from 51 (servers never seen), over the
    same window.

    Labels are in the metadata, and ``server_seeds`` says which generator seed each server
    came from: "seen in training" is decided by that, not by the name.
    """
    from linborg.generator.fleet import DEFAULT_COMPOSITION, build_fleet

    comp = dict(composition or DEFAULT_COMPOSITION)
    steps = int(round(days * 86400 / STEP_SECONDS))
    if start is not None:
        start = align(start)
        fleet = build_fleet(comp)
        frame, incidents, _ = simulate(fleet, seed, start, steps)
        for col in (SERVER, PROFILE, STATE):
            frame[col] = frame[col].astype(str)
        meta = history_metadata(fleet, seed, start, steps, list(incidents))
        meta["server_seeds"] = {s.name: seed for s in fleet}
        meta["heldout"] = {"seed": seed, "servers": [s.name for s in fleet]}
        return write_metrics(frame, path, meta), meta
    train_start = align(train_start)
    train_steps = int(round(train_days * 86400 / STEP_SECONDS))
    start = train_start + dt.timedelta(seconds=train_steps * STEP_SECONDS)
    seen_fleet = build_fleet(comp)
    seen, seen_inc, _ = simulate(seen_fleet, train_seed, train_start, train_steps + steps)
    seen = seen[seen[TIMESTAMP] >= pd.Timestamp(start)]
    new_fleet = build_fleet(comp, first=51)
    new, new_inc, _ = simulate(new_fleet, seed, start, steps)
    frame = pd.concat([seen, new], ignore_index=True)
    for col in (SERVER, PROFILE, STATE):
        frame[col] = frame[col].astype(str)
    labels = [i for i in seen_inc if i.onset >= start] + list(new_inc)
    meta = history_metadata(seen_fleet + new_fleet, seed, start, steps, labels)
    meta["server_seeds"] = {
        **{s.name: train_seed for s in seen_fleet},
        **{s.name: seed for s in new_fleet},
    }
    meta["heldout"] = {
        "train_seed": train_seed,
        "seen_servers": [s.name for s in seen_fleet],
        "unseen_servers": [s.name for s in new_fleet],
    }
    path = write_metrics(frame, path, meta)
    return path, meta
