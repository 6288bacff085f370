"""Temporal Fusion Transformer training, model bundles and backtests (issue 4)."""
