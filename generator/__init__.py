"""Synthetic LINBORG fleet: Parquet history, live /metrics and Prometheus backfill (issue 3)."""
