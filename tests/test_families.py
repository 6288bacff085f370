"""linborg.families names exactly the series families the exporter exposes."""

from __future__ import annotations

import re
from pathlib import Path

from linborg import families as F
from linborg.contract import NAMESPACE

GOLDEN = Path(__file__).resolve().parent / "golden" / "metrics.txt"


def _golden_families() -> list[str]:
    """Return the family names of the exporter's golden /metrics text, in order."""
    names = [line.split()[2] for line in GOLDEN.read_text().splitlines() if line[:7] == "# TYPE "]
    assert names, f"{GOLDEN} has no # TYPE lines"
    return names


def test_the_families_are_exactly_those_on_the_exporters_metrics():
    golden = _golden_families()
    missing = sorted(set(golden) - set(F.ON_METRICS))
    unknown = sorted(set(F.ON_METRICS) - set(golden))
    assert not missing, f"the exporter exposes families linborg/families.py lacks: {missing}"
    assert not unknown, f"linborg/families.py names families the exporter lacks: {unknown}"
    assert len(F.ON_METRICS) == len(set(F.ON_METRICS))


def test_every_constant_is_listed_once_and_named_on_the_wire():
    constants = {
        name: value
        for name, value in vars(F).items()
        if name.isupper() and isinstance(value, str) and value.startswith(f"{NAMESPACE}_")
    }
    assert set(constants.values()) == {*F.ON_METRICS, F.FORECAST_PATH}
    assert len(set(constants.values())) == len(constants), "two constants, one name"
    for value in constants.values():
        assert re.fullmatch(r"linborg_[a-z0-9_]+", value), value


def test_the_forecast_path_is_the_series_the_api_serves():
    from linborg.exporter.promapi import SERIES_NAME

    assert SERIES_NAME == F.FORECAST_PATH


def test_docs_architecture_lists_every_family_on_metrics():
    text = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    missing = [name for name in F.ON_METRICS if f"`{name}" not in text]
    assert not missing, f"docs/architecture.md does not describe {missing}"
