"""Grafana dashboards as code with grafanalib, and their provisioning."""
