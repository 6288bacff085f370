"""Stable Grafana dashboard UIDs, shared by the alert rules' dashboard_url and grafana/."""

from __future__ import annotations

#: Dashboard key -> UID. Changing a UID breaks every link already sent in a notification.
DASHBOARD_UIDS = {
    "fleet": "linborg-fleet",
    "server": "linborg-server",
    "profiles": "linborg-profiles",
    "quality": "linborg-quality",
    "exporter": "linborg-exporter",
    "impact": "linborg-impact",
}

#: Where Grafana is; the alert rules build dashboard links from it (configurable in rules).
DEFAULT_GRAFANA_URL = "http://localhost:3000"
