"""Prometheus durations ("30s", "5m", "1h30m", "2w", "500ms"): the one parser of the repo.

The syntax is Prometheus' own (``model.ParseDuration``): units from the largest to the
smallest, each at most once, ``y`` = 365 days and ``w`` = 7 days. The configuration, the rule
generators and the forecast path API (PromQL durations and ``step``) all read durations here.
"""

from __future__ import annotations

import re

#: One group per unit, largest first, as Prometheus requires them in order.
_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?\Z"
)
#: Milliseconds of each group of _DURATION.
_UNIT_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def duration_ms(text: str) -> int:
    """Return the milliseconds of a Prometheus duration; raise ValueError for other text."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if text == "" or m is None or not any(m.groups()):
        raise ValueError(text)
    return sum(int(v) * unit for v, unit in zip(m.groups(), _UNIT_MS, strict=True) if v)


def parse_duration(text: str) -> int:
    """Return the whole seconds of a duration such as '30m' or '8h'; raise ValueError otherwise."""
    try:
        ms = duration_ms(str(text))
    except ValueError:
        ms = None
    if ms is None or ms % 1000:
        raise ValueError(f"'{text}' is not a duration like 30s, 5m, 2h or 1d")
    return ms // 1000
