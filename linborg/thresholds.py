"""Per-profile warning and critical thresholds, from the packaged data file plus user overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from linborg.contract import (
    DEPRECATED_NAMES,
    METRIC_NAMES,
    METRICS_BY_NAME,
    PROFILE_NAMES,
    ContractError,
    deprecation_message,
)

LEVELS = ("warning", "critical")


@dataclass(frozen=True)
class Threshold:
    """Warning and critical levels of one metric for one profile."""

    warning: float
    critical: float
    #: "above" or "below", from the metric's contract entry.
    direction: str

    def breached(self, value: float, level: str) -> bool:
        """Return True when ``value`` is at or past the ``level`` threshold."""
        limit = self.warning if level == "warning" else self.critical
        return value >= limit if self.direction == "above" else value <= limit


class Thresholds:
    """Thresholds for every (profile, metric) pair."""

    def __init__(self, table: Mapping[tuple[str, str], Threshold]):
        self._table = dict(table)

    def get(self, profile: str, metric: str) -> Threshold:
        """Return the threshold of ``metric`` for ``profile``."""
        try:
            return self._table[(profile, metric)]
        except KeyError:
            raise ContractError(
                f"no threshold for profile '{profile}', metric '{metric}'"
            ) from None

    def items(self) -> list[tuple[tuple[str, str], Threshold]]:
        """Return ((profile, metric), threshold) for every pair, in contract order."""
        return list(self._table.items())

    def as_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        """Return {profile: {metric: {warning, critical}}} for every pair."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (prof, name), t in self._table.items():
            out.setdefault(prof, {})[name] = {"warning": t.warning, "critical": t.critical}
        return out


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text()
    except OSError as err:
        raise ContractError(f"{path}: cannot read thresholds file: {err.strerror}") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ContractError(f"{path}: not valid YAML: {err}") from None


def _check_entry(where: str, entry: Any, problems: list[str]) -> dict[str, float]:
    """Return the levels given in ``entry``; add what is wrong to ``problems``."""
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: expected a mapping with warning and critical, got {entry!r}")
        return {}
    levels: dict[str, float] = {}
    for key, value in entry.items():
        if key not in LEVELS:
            problems.append(f"{where}.{key}: unknown key; use warning and critical")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}.{key}: expected a number, got {value!r}")
        else:
            levels[key] = float(value)
    return levels


def _parse(source: str, doc: Any, problems: list[str]) -> dict[tuple[str, str], dict]:
    """Return {(profile or '*', metric): levels} from one thresholds document."""
    out: dict[tuple[str, str], dict] = {}
    if not isinstance(doc, Mapping):
        problems.append(f"{source}: expected a mapping with 'defaults' and/or 'profiles'")
        return out
    for key in doc:
        if key not in ("defaults", "profiles"):
            problems.append(f"{source}: unknown top-level key '{key}'; use defaults and profiles")

    def metrics_block(where: str, block: Any, prof: str) -> None:
        if block is None:
            return
        if not isinstance(block, Mapping):
            problems.append(f"{where}: expected a mapping of metric names")
            return
        for name, entry in block.items():
            if name in DEPRECATED_NAMES:
                problems.append(f"{where}.{name}: {deprecation_message(name)}")
            elif name not in METRICS_BY_NAME:
                problems.append(f"{where}.{name}: unknown metric")
            else:
                out[(prof, name)] = _check_entry(f"{where}.{name}", entry, problems)

    metrics_block(f"{source}: defaults", doc.get("defaults"), "*")
    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, Mapping):
        problems.append(f"{source}: profiles: expected a mapping of profile names")
        profiles = {}
    for prof, block in profiles.items():
        if prof not in PROFILE_NAMES:
            problems.append(
                f"{source}: profiles.{prof}: unknown profile; known: {', '.join(PROFILE_NAMES)}"
            )
            continue
        metrics_block(f"{source}: profiles.{prof}", block, prof)
    return out


def load_thresholds(*override_paths: str | Path) -> Thresholds:
    """Return the packaged thresholds with each override file applied in turn.

    Every problem in every file is reported at once in one ContractError.
    """
    problems: list[str] = []
    packaged = resources.files("linborg").joinpath("thresholds.yaml")
    with resources.as_file(packaged) as path:
        layers = [_parse("thresholds.yaml", _read_yaml(Path(path)), problems)]
    for p in override_paths:
        p = Path(p)
        try:
            layers.append(_parse(str(p), _read_yaml(p), problems))
        except ContractError as err:
            problems.append(str(err))

    table: dict[tuple[str, str], Threshold] = {}
    for prof in PROFILE_NAMES:
        for name in METRIC_NAMES:
            # A profile's own value beats a default, whichever file either comes from;
            # among equals the later file wins.
            merged: dict[str, float] = {}
            for layer in layers:
                merged.update(layer.get(("*", name), {}))
            for layer in layers:
                merged.update(layer.get((prof, name), {}))
            missing = [lv for lv in LEVELS if lv not in merged]
            if missing:
                problems.append(f"{prof}.{name}: no {' or '.join(missing)} threshold")
                continue
            m = METRICS_BY_NAME[name]
            t = Threshold(merged["warning"], merged["critical"], m.direction)
            for level in LEVELS:
                value = getattr(t, level)
                if not m.min <= value <= m.max:
                    problems.append(
                        f"{prof}.{name}.{level}: {value:g} is outside the valid range "
                        f"[{m.min:g}, {m.max:g}]"
                    )
            if m.direction == "above" and not t.warning < t.critical:
                problems.append(
                    f"{prof}.{name}: warning ({t.warning:g}) must be below critical "
                    f"({t.critical:g}) because higher is worse"
                )
            if m.direction == "below" and not t.warning > t.critical:
                problems.append(
                    f"{prof}.{name}: warning ({t.warning:g}) must be above critical "
                    f"({t.critical:g}) because lower is worse"
                )
            table[(prof, name)] = t
    if problems:
        raise ContractError(
            f"{len(problems)} problem(s) in thresholds:\n  " + "\n  ".join(problems)
        )
    return Thresholds(table)


#: Ratios of MAEs add this share of the metric's generic warning level to both sides, so a
#: series that a baseline forecasts exactly (0 error) still gives a finite, honest ratio.
RATIO_EPS_FRACTION = 1e-6


def ratio_floors() -> list[float]:
    """Return each metric's ratio floor, in METRIC_NAMES order: RATIO_EPS_FRACTION of its
    packaged generic warning level (``linborg evaluate``'s ratios and the training's
    ``val_naive_ratio`` both add it)."""
    th = load_thresholds()
    return [RATIO_EPS_FRACTION * abs(th.get("generic", m).warning) for m in METRIC_NAMES]
