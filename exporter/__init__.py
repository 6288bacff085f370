"""The forecasting exporter: Prometheus in, TFT forecasts and risk out."""
