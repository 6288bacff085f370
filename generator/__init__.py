"""Synthetic LINBORG fleet: Parquet history, live /metrics and Prometheus backfill."""
