"""Package data: the Alertmanager config and templates (installed as linborg.alertmanager)."""
