"""A small client for Prometheus' HTTP query API, shared by the trainer and the exporter.

Works against any Prometheus-compatible query API (Prometheus, Thanos, Mimir, VictoriaMetrics).
Every failure becomes a PrometheusError that says what went wrong in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from linborg.contract import ContractError

#: Prometheus refuses range queries of more than 11,000 points per series.
MAX_POINTS_PER_QUERY = 11_000


class PrometheusError(RuntimeError):
    """Raise when Prometheus cannot be reached or answers with an error or malformed data.

    ``unreachable`` is True when no answer came at all (refused, timed out): asking again at
    once is pointless.
    """

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


@dataclass
class Series:
    """One series of a query result: its labels, timestamps (s) and values."""

    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray


def _read_secret(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as err:
        raise PrometheusError(f"cannot read {what} file {path}: {err.strerror}") from None


def connection_problems(url: str, bearer_token_file, basic_auth_user) -> list[str]:
    """Return what is wrong with how a Prometheus is reached (empty when nothing).

    Credentials inside the URL are refused: every failure log line names the URL, so they would
    be printed. Bearer token and basic auth together are refused: only one can be sent.
    """
    from urllib.parse import urlsplit

    problems = []
    try:
        parts = urlsplit(str(url))
        userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        userinfo = "@" in str(url)
    if userinfo:
        problems.append(
            "prometheus.url: credentials in the URL are refused (they would appear in every "
            "log line); use prometheus.basic_auth.username and password_file, or "
            "bearer_token_file"
        )
    if bearer_token_file and basic_auth_user:
        problems.append(
            "prometheus.bearer_token_file and prometheus.basic_auth are both set; set one "
            "(only one Authorization header can be sent)"
        )
    return problems


@dataclass
class PrometheusClient:
    """Query Prometheus at ``url``; secrets come from files, never from configuration text."""

    url: str
    timeout: float = 30.0
    bearer_token_file: str | None = None
    basic_auth_user: str | None = None
    basic_auth_password_file: str | None = None
    ca_file: str | None = None
    session: requests.Session = field(default_factory=requests.Session)
    #: Response bytes received so far (for traffic accounting).
    bytes_received: int = 0

    def __post_init__(self):
        problems = connection_problems(self.url, self.bearer_token_file, self.basic_auth_user)
        if problems:
            raise ContractError("; ".join(problems))

    def _headers(self) -> dict[str, str]:
        if self.bearer_token_file:
            return {
                "Authorization": "Bearer " + _read_secret(self.bearer_token_file, "bearer token")
            }
        return {}

    def _get(self, path: str, params: dict) -> dict:
        auth = None
        if self.basic_auth_user:
            password = ""
            if self.basic_auth_password_file:
                password = _read_secret(self.basic_auth_password_file, "basic-auth password")
            auth = (self.basic_auth_user, password)
        try:
            resp = self.session.post(
                self.url.rstrip("/") + path,
                data=params,
                headers=self._headers(),
                auth=auth,
                timeout=self.timeout,
                verify=self.ca_file or True,
            )
        except requests.Timeout:
            raise PrometheusError(
                f"{self.url} did not answer within {self.timeout:g}s", unreachable=True
            ) from None
        except requests.RequestException as err:
            raise PrometheusError(f"cannot reach {self.url}: {err}", unreachable=True) from None
        self.bytes_received += len(resp.content)
        try:
            doc = resp.json()
        except ValueError:
            raise PrometheusError(
                f"{self.url} answered HTTP {resp.status_code} with something that is not JSON"
            ) from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            reason = doc.get("error") if isinstance(doc, dict) else None
            raise PrometheusError(
                f"{self.url} answered HTTP {resp.status_code}: {reason or 'malformed response'}"
            )
        data = doc.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise PrometheusError(f"{self.url} answered without a result list")
        return data

    @staticmethod
    def _series(result: list) -> list[Series]:
        out = []
        for item in result:
            try:
                labels = dict(item["metric"])
                pairs = item["values"] if "values" in item else [item["value"]]
                ts = np.array([float(p[0]) for p in pairs])
                vals = np.array([float(p[1]) for p in pairs])  # "NaN", "+Inf" parse too
            except (KeyError, TypeError, ValueError, IndexError):
                raise PrometheusError("malformed series in the response") from None
            out.append(Series(labels, ts, vals))
        return out

    def query(self, query: str, time: float) -> list[Series]:
        """Return the instant query result at ``time``."""
        data = self._get("/api/v1/query", {"query": query, "time": f"{time:.3f}"})
        return self._series(data["result"])

    def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """Return the range query result, split into chunks under Prometheus' point limit."""
        if end < start:
            return []
        span = (MAX_POINTS_PER_QUERY - 1) * step
        merged: dict[tuple, list[Series]] = {}
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + span)
            data = self._get(
                "/api/v1/query_range",
                {"query": query, "start": chunk_start, "end": chunk_end, "step": step},
            )
            for s in self._series(data["result"]):
                merged.setdefault(tuple(sorted(s.labels.items())), []).append(s)
            chunk_start = chunk_end + step
            if math.isclose(chunk_end, end):
                break
        return [
            Series(
                parts[0].labels,
                np.concatenate([p.timestamps for p in parts]),
                np.concatenate([p.values for p in parts]),
            )
            for parts in merged.values()
        ]
