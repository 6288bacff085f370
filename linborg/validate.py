"""Validate a long-format LINBORG metrics table and report every problem at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from linborg.contract import (
    DEPRECATED_NAMES,
    KEY_COLUMNS,
    METRIC_NAMES,
    METRICS,
    OPTIONAL_COLUMNS,
    PROFILE,
    PROFILE_NAMES,
    SERVER,
    STATE,
    STATES,
    STEP_SECONDS,
    TIMESTAMP,
    ContractError,
    deprecation_message,
)

MAX_EXAMPLES = 3


@dataclass(frozen=True)
class Problem:
    """One rule a metrics table breaks: a stable kind, how many rows, and readable text."""

    kind: str
    count: int
    message: str


class ValidationError(ContractError):
    """Raise with every problem of a metrics table; ``problems`` holds them as data."""

    def __init__(self, problems: list[Problem], source: str = "metrics table"):
        self.problems = problems
        lines = "\n".join(f"  - [{p.kind}] {p.message}" for p in problems)
        super().__init__(
            f"{source} breaks the LINBORG contract ({len(problems)} problems):\n{lines}"
        )


def _fmt_time(value) -> str:
    ts = pd.Timestamp(value)
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if ts.tzinfo is not None else "")


def _plain(value):
    """Return ``value`` as a Python scalar so that its repr reads 120.5, not np.float64(120.5)."""
    return value.item() if isinstance(value, np.generic) else value


def _examples(frame: pd.DataFrame, mask: np.ndarray, column: str | None = None) -> str:
    """Return 'e.g. server X at T (value V); ...' for the first rows where ``mask`` is set."""
    rows = np.flatnonzero(mask)[:MAX_EXAMPLES]
    parts = []
    for i in rows:
        where = []
        if SERVER in frame.columns:
            where.append(f"server {_plain(frame[SERVER].iat[i])!r}")
        if TIMESTAMP in frame.columns:
            try:
                where.append(f"at {_fmt_time(frame[TIMESTAMP].iat[i])}")
            except (ValueError, TypeError):
                where.append(f"at {frame[TIMESTAMP].iat[i]!r}")
        if not where:
            where.append(f"row {i}")
        if column is not None:
            where.append(f"value {_plain(frame[column].iat[i])!r}")
        parts.append(" ".join(where))
    return "e.g. " + "; ".join(parts)


def _is_text(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(series)


def check(frame: pd.DataFrame, *, allow_missing: bool = False) -> list[Problem]:
    """Return every contract problem of a long-format metrics table (empty list: valid).

    With ``allow_missing`` a table may lack metric columns, hold NaN for samples that
    were not collected, skip steps (gaps a whole number of steps long) and leave ``state``
    empty on some rows (real history stacked with labelled synthetic history has none);
    everything else is checked as strictly as without it.
    """
    if not isinstance(frame, pd.DataFrame):
        return [
            Problem("not_a_table", 1, f"expected a pandas DataFrame, got {type(frame).__name__}")
        ]
    problems: list[Problem] = []

    def add(kind: str, count: int, message: str) -> None:
        problems.append(Problem(kind, int(count), message))

    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        add("duplicate_column", len(dupes), f"columns appear more than once: {', '.join(dupes)}")
        return problems
    for name in columns:
        if name in DEPRECATED_NAMES:
            add("deprecated_column", 1, f"column {deprecation_message(name)}")
    for name in KEY_COLUMNS:
        if name not in columns:
            add("missing_column", 1, f"required column '{name}' is missing")
    absent = [m for m in METRIC_NAMES if m not in columns]
    if absent and not allow_missing:
        add("missing_column", len(absent), f"metric columns missing: {', '.join(absent)}")
    known = set(KEY_COLUMNS) | set(METRIC_NAMES) | set(OPTIONAL_COLUMNS) | set(DEPRECATED_NAMES)
    extra = [c for c in columns if c not in known]
    if extra:
        add(
            "extra_column",
            len(extra),
            f"unexpected columns: {', '.join(extra)} (allowed besides the 14 metrics: "
            f"{', '.join(KEY_COLUMNS + OPTIONAL_COLUMNS)})",
        )
    if len(frame) == 0:
        add("empty", 0, "the table has no rows")
        return problems

    # Keys.
    ts_ok = False
    if TIMESTAMP in columns:
        ts = frame[TIMESTAMP]
        if not pd.api.types.is_datetime64_any_dtype(ts):
            add(
                "wrong_dtype",
                len(ts),
                f"column 'timestamp' has dtype {ts.dtype}; expected datetime64 (UTC)",
            )
        elif getattr(ts.dtype, "tz", None) is not None and str(ts.dtype.tz) != "UTC":
            add(
                "wrong_dtype",
                len(ts),
                f"column 'timestamp' is in time zone {ts.dtype.tz}; expected UTC or naive UTC",
            )
        else:
            nat = ts.isna().to_numpy()
            if nat.any():
                add(
                    "nan",
                    nat.sum(),
                    f"'timestamp' has {nat.sum()} missing values; {_examples(frame, nat)}",
                )
            else:
                ts_ok = True
    for name in (SERVER, PROFILE):
        if name in columns:
            col = frame[name]
            if not _is_text(col):
                add(
                    "wrong_dtype",
                    len(col),
                    f"column '{name}' has dtype {col.dtype}; expected strings",
                )
                continue
            empty = (col.isna() | (col.astype("string").str.len() == 0)).to_numpy(bool)
            if empty.any():
                add(
                    "nan",
                    empty.sum(),
                    f"'{name}' has {empty.sum()} empty values; {_examples(frame, empty)}",
                )
    if PROFILE in columns and _is_text(frame[PROFILE]):
        values = frame[PROFILE].astype("string")
        bad = (~values.isin(PROFILE_NAMES) & values.notna()).to_numpy(bool)
        if bad.any():
            names = sorted(set(values[bad].unique()))
            add(
                "unknown_profile",
                bad.sum(),
                f"{bad.sum()} rows have unknown profiles {names}; known profiles are: "
                f"{', '.join(PROFILE_NAMES)}; {_examples(frame, bad, PROFILE)}",
            )
        if SERVER in columns and _is_text(frame[SERVER]):
            per_server = frame.groupby(SERVER, observed=True)[PROFILE].nunique()
            multi = per_server[per_server > 1]
            if len(multi):
                add(
                    "inconsistent_profile",
                    len(multi),
                    f"{len(multi)} servers have more than one profile, e.g. "
                    f"{', '.join(map(repr, multi.index[:MAX_EXAMPLES]))}",
                )
    if STATE in columns:
        col = frame[STATE]
        if not _is_text(col):
            add("wrong_dtype", len(col), f"column 'state' has dtype {col.dtype}; expected strings")
        else:
            text = col.astype("string")
            bad = ~text.isin(STATES)
            if allow_missing:  # an unlabelled row (history from a real fleet) has no state
                bad &= text.notna()
            bad = bad.to_numpy(bool)
            if bad.any():
                names = sorted(
                    map(str, set(col[bad].astype("string").fillna("<missing>").unique()))
                )
                add(
                    "unknown_state",
                    bad.sum(),
                    f"{bad.sum()} rows have unknown states {names}; known states are: "
                    f"{', '.join(STATES)}; {_examples(frame, bad, STATE)}",
                )

    # Metric values.
    for m in METRICS:
        if m.name not in columns:
            continue
        col = frame[m.name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            add(
                "wrong_dtype",
                len(col),
                f"metric '{m.name}' has dtype {col.dtype}; expected a number ({m.unit})",
            )
            continue
        values = col.to_numpy(np.float64, na_value=np.nan)
        nan = np.isnan(values)
        if nan.any() and not allow_missing:
            add("nan", nan.sum(), f"'{m.name}' has {nan.sum()} NaN values; {_examples(frame, nan)}")
        inf = np.isinf(values)
        if inf.any():
            add(
                "inf",
                inf.sum(),
                f"'{m.name}' has {inf.sum()} infinite values; {_examples(frame, inf, m.name)}",
            )
        finite = np.isfinite(values)
        out = finite & ((values < m.min) | (values > m.max))
        if out.any():
            add(
                "out_of_range",
                out.sum(),
                f"'{m.name}' has {out.sum()} values outside [{m.min:g}, {m.max:g}] {m.unit}; "
                f"{_examples(frame, out, m.name)}",
            )

    # Time grid, per server.
    if ts_ok and SERVER in columns and _is_text(frame[SERVER]):
        keys = frame[[SERVER, TIMESTAMP]]
        dup = keys.duplicated(keep="first").to_numpy(bool)
        if dup.any():
            add(
                "duplicate_row",
                dup.sum(),
                f"{dup.sum()} rows repeat an earlier (server, timestamp); {_examples(frame, dup)}",
            )
        ts_utc = pd.to_datetime(frame[TIMESTAMP], utc=True)
        nanos = ((ts_utc - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ns")).to_numpy(np.int64)
        step_ns = STEP_SECONDS * 10**9
        off_grid = (nanos % step_ns) != 0
        codes = pd.factorize(frame[SERVER])[0]
        order = np.lexsort((nanos, codes))
        step = np.diff(nanos[order])
        same = codes[order][1:] == codes[order][:-1]
        delta = step[same]
        irregular = delta % step_ns != 0 if allow_missing else delta != step_ns
        irregular &= delta != 0  # duplicates are reported above
        if irregular.any() or off_grid.any():
            rows = np.zeros(len(frame), bool)
            rows[order[1:][same][irregular]] = True
            rows |= off_grid
            expected = "a whole number of" if allow_missing else "exactly"
            add(
                "irregular_step",
                rows.sum(),
                f"{rows.sum()} samples are not {expected} {STEP_SECONDS // 60} minutes after "
                f"the previous one of their server, or not on the {STEP_SECONDS // 60}-minute "
                f"grid; {_examples(frame, rows)}",
            )
    return problems


def validate(
    frame: pd.DataFrame, *, allow_missing: bool = False, source: str = "metrics table"
) -> None:
    """Raise ValidationError listing every problem of ``frame``; return None when it is valid."""
    problems = check(frame, allow_missing=allow_missing)
    if problems:
        raise ValidationError(problems, source)


def tidy(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Return ``frame`` with real-world blemishes repaired, and how many of each there were.

    The policy for history read to train or evaluate (never for what the exporter serves):

    - ``out_of_range``: a finite sample outside its metric's range (a VM reporting 111.7% CPU)
      becomes missing, like a sample that was never collected; ``inf`` likewise;
    - ``off_grid``: a timestamp off the 5-minute grid snaps to the nearest mark;
    - ``merged``: samples of one server that land on one mark after snapping are averaged
      (per metric, over the samples present), so one row per server and step remains.

    Everything else (unknown profiles, wrong types, deprecated names) is left for ``validate``
    to report. The counts go into the training summary; nothing is dropped silently.
    """
    out = frame.copy()
    counts = {"out_of_range": 0, "inf": 0, "off_grid": 0, "merged": 0}
    for m in METRICS:
        if m.name not in out.columns or not pd.api.types.is_numeric_dtype(out[m.name]):
            continue
        if pd.api.types.is_bool_dtype(out[m.name]):
            continue
        values = out[m.name].to_numpy(np.float64, na_value=np.nan, copy=True)
        inf = np.isinf(values)
        bad = np.isfinite(values) & ((values < m.min) | (values > m.max))
        counts["inf"] += int(inf.sum())
        counts["out_of_range"] += int(bad.sum())
        if inf.any() or bad.any():
            values[inf | bad] = np.nan
            out[m.name] = values
    if TIMESTAMP in out.columns and pd.api.types.is_datetime64_any_dtype(out[TIMESTAMP]):
        ts = pd.to_datetime(out[TIMESTAMP], utc=True)
        snapped = ts.dt.round(f"{STEP_SECONDS}s")
        moved = (snapped != ts).to_numpy(bool)
        counts["off_grid"] = int(moved.sum())
        if moved.any():
            out[TIMESTAMP] = snapped
            if SERVER in out.columns:
                dup = out.duplicated([SERVER, TIMESTAMP], keep=False).to_numpy(bool)
                if dup.any():
                    keys = [SERVER, TIMESTAMP]
                    rest = [c for c in out.columns if c not in keys]
                    numeric = [c for c in rest if c in METRIC_NAMES]
                    agg = {c: ("mean" if c in numeric else "first") for c in rest}
                    merged = out[dup].groupby(keys, observed=True, sort=False).agg(agg)
                    merged = merged.reset_index()[out.columns]
                    counts["merged"] = int(dup.sum() - len(merged))
                    out = pd.concat([out[~dup], merged], ignore_index=True)
                    out = out.sort_values(keys, kind="stable", ignore_index=True)
    return out, counts
