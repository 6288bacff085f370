"""LINBORG: forecasting exporter for Prometheus. This package is the core every stage imports.

Three floors, imports only downwards (docs/architecture.md, enforced by tests/test_layers.py):
the core (the modules directly in ``linborg/``: the data contract, thresholds, features, risk,
validation, Parquet, the Prometheus client and the serving model), the stages above it
(``linborg.generator``, ``linborg.trainer``, ``linborg.exporter``, ``linborg.mixin``) and the
application on top (``linborg.app``: the command line and the demo supervisor;
``linborg.grafana``: the dashboard previews).

Importing it loads only the standard library; pandas, pyarrow and torch are imported by the
modules that need them (``linborg.validate``, ``linborg.parquet``, ``linborg.model``).
"""

from importlib import metadata as _metadata

from linborg.contract import (
    CONTRACT_VERSION,
    METRIC_NAMES,
    METRICS,
    NAMESPACE,
    PROFILE_NAMES,
    PROFILES,
    STATES,
    STEP_SECONDS,
    ContractError,
)

try:
    __version__ = _metadata.version("linborg")
except _metadata.PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "unknown"

__all__ = [
    "CONTRACT_VERSION",
    "METRIC_NAMES",
    "METRICS",
    "NAMESPACE",
    "PROFILE_NAMES",
    "PROFILES",
    "STATES",
    "STEP_SECONDS",
    "ContractError",
    "__version__",
]
