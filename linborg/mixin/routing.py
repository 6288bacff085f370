"""Who gets which LINBORG alert: the routing matrix that alertmanager/alertmanager.yml implements.

The matrix is data here, and everything that shows it is made from it: the "Routing matrix"
table of alertmanager/README.md (``markdown()``; tests/test_alertmanager.py fails when the
README drifts) and the Impact dashboard's "Alert routing" panel. The same test routes each
row's ``example`` through the production config with ``amtool config routes test``, so the
matrix cannot claim a route the config does not take.

Warnings go to one Slack channel per profile that has an owning team (every contract profile
but ``generic``) and to ``#linborg-exporter`` for the exporter's own health; the receiver of a
profile is ``slack-linborg-<profile, with dashes>``. Imports only the contract and the mixin.
"""

from __future__ import annotations

from dataclasses import dataclass

from linborg.contract import PROFILE_NAMES
from linborg.mixin import CONFIG

#: Profiles without a channel of their own: their warnings go to the catch-all.
UNOWNED_PROFILES = ("generic",)
#: `profile` label of the exporter-health alerts.
EXPORTER_PROFILE = CONFIG["health_profile"]
#: The catch-all: generic and unknown profiles, and unknown or missing severities.
CATCH_ALL = "slack-linborg-alerts"


@dataclass(frozen=True)
class Route:
    """One row of the matrix: which alerts go to which receiver, and where that is."""

    severity: str  # Markdown, as the README shows it
    profile: str  # Markdown
    receiver: str
    where: str
    #: Labels of one alert this row routes.
    example: tuple[tuple[str, str], ...]


def _code(name: str) -> str:
    return f"`{name}`"


def profile_receiver(profile: str) -> str:
    """Return the Slack receiver of a profile's warnings."""
    return f"slack-linborg-{profile.replace('_', '-')}"


def _warning(profile: str) -> Route:
    receiver = profile_receiver(profile)
    channel = receiver.removeprefix("slack-")
    return Route(
        _code("warning"),
        _code(profile),
        receiver,
        f"Slack `#{channel}`",
        (("severity", "warning"), ("profile", profile)),
    )


ROUTES: tuple[Route, ...] = (
    Route(
        _code("critical"),
        "any",
        "pagerduty-linborg",
        "PagerDuty (Events v2), one service",
        (("severity", "critical"), ("profile", "web_api")),
    ),
    *(_warning(p) for p in PROFILE_NAMES if p not in UNOWNED_PROFILES),
    _warning(EXPORTER_PROFILE),
    Route(
        _code("warning"),
        ", ".join(_code(p) for p in UNOWNED_PROFILES) + ", unknown or missing",
        CATCH_ALL,
        "Slack `#linborg-alerts`",
        (("severity", "warning"), ("profile", UNOWNED_PROFILES[0])),
    ),
    Route(
        _code("info"),
        "any",
        "discard",
        "nowhere: the Alertmanager UI and the dashboards show them",
        (("severity", "info"), ("profile", "database")),
    ),
    Route(
        "anything else, or missing",
        "any",
        CATCH_ALL,
        "Slack `#linborg-alerts`",
        (("severity", "page"), ("profile", "database")),
    ),
)


def markdown() -> str:
    """Return the matrix as a Markdown table."""
    lines = ["| severity | profile | receiver | where it goes |", "|---|---|---|---|"]
    for r in ROUTES:
        lines.append(f"| {r.severity} | {r.profile} | {_code(r.receiver)} | {r.where} |")
    return "\n".join(lines)
