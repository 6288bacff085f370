"""LINBORG: forecasting exporter for Prometheus. This package holds the shared data contract.

Importing it loads only the standard library; pandas, pyarrow and torch are imported by the
modules that need them (``linborg.validate``, ``linborg.parquet``, the trainer, the exporter).
"""

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
]
