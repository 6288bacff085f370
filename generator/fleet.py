"""Fleet specs: how many servers of each profile, named by the contract's hostname conventions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from linborg.contract import PROFILE_NAMES, PROFILES_BY_NAME, ContractError

#: The default demo and training fleet: 90 servers.
DEFAULT_COMPOSITION: Mapping[str, int] = {
    "web_api": 25,
    "ml_compute": 20,
    "database": 15,
    "data_ingest": 10,
    "risk_analytics": 8,
    "generic": 7,
    "conductor_mgmt": 5,
}

MAX_SERVERS = 100_000


@dataclass(frozen=True)
class Server:
    """One server of the fleet."""

    name: str
    profile: str


def build_fleet(
    composition: Mapping[str, int] = DEFAULT_COMPOSITION, first: int = 1
) -> list[Server]:
    """Return the servers of ``composition``, numbered from ``first`` in each profile.

    Every problem (unknown profile, bad count, a count over the naming convention) is
    reported at once.
    """
    problems = []
    for name, count in composition.items():
        if name not in PROFILES_BY_NAME:
            problems.append(
                f"unknown profile '{name}'; known profiles are: {', '.join(PROFILE_NAMES)}"
            )
            continue
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            problems.append(f"{name}: server count must be a whole number >= 0, got {count!r}")
            continue
        limit = 10 ** PROFILES_BY_NAME[name].digits - first
        if count > limit:
            prof = PROFILES_BY_NAME[name]
            problems.append(
                f"{name}: {count} servers do not fit the naming convention "
                f"{prof.hostname_prefix}{'#' * prof.digits} (at most {limit})"
            )
    total = sum(c for c in composition.values() if isinstance(c, int))
    if not problems and total == 0:
        problems.append("the fleet has no servers")
    if total > MAX_SERVERS:
        problems.append(f"the fleet has {total} servers; at most {MAX_SERVERS} are supported")
    if problems:
        raise ContractError("impossible fleet spec:\n  " + "\n  ".join(problems))
    return [
        Server(PROFILES_BY_NAME[name].hostname(i), name)
        for name in PROFILE_NAMES
        for i in range(first, first + composition.get(name, 0))
    ]


def parse_composition(text: str) -> dict[str, int]:
    """Parse 'web_api=25,database=15' into a composition; report malformed parts clearly."""
    out: dict[str, int] = {}
    problems = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, count = part.partition("=")
        if not sep:
            problems.append(f"'{part}': expected PROFILE=COUNT")
            continue
        try:
            out[name.strip()] = int(count)
        except ValueError:
            problems.append(f"'{part}': count '{count}' is not a whole number")
    if problems:
        raise ContractError("impossible fleet spec:\n  " + "\n  ".join(problems))
    return out


def scaled_composition(servers: int) -> dict[str, int]:
    """Return the default mix scaled to ``servers`` servers (each profile at least 1).

    A profile whose naming convention is full (ppcon## holds 99) keeps its maximum and the
    rest is shared among the others in the default proportions.
    """
    limits = {n: 10 ** PROFILES_BY_NAME[n].digits - 1 for n in DEFAULT_COMPOSITION}
    if not len(DEFAULT_COMPOSITION) <= servers <= sum(limits.values()):
        raise ContractError(
            f"impossible fleet spec: {servers} servers; the default mix holds "
            f"{len(DEFAULT_COMPOSITION)} to {sum(limits.values())} (give --fleet PROFILE=COUNT,...)"
        )
    out = {n: 1 for n in DEFAULT_COMPOSITION}
    while (left := servers - sum(out.values())) > 0:
        open_ = {n: c for n, c in DEFAULT_COMPOSITION.items() if out[n] < limits[n]}
        weight = sum(open_.values())
        for n, c in open_.items():
            out[n] = min(limits[n], out[n] + max(1, left * c // weight))
            if sum(out.values()) >= servers:
                break
    return out
