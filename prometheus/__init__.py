"""Package data: the Prometheus config and rule files (installed as linborg.prometheus)."""
