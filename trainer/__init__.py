"""Temporal Fusion Transformer training, model bundles and backtests."""
