"""Start real Prometheus-ecosystem binaries on loopback for integration tests, and stop them."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests

from linborg.app.stack import free_ports


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now and not handed out before."""
    return free_ports(1)[0]


def require(binary: str) -> str:
    """Return the path of ``binary``; fail (never skip) when the set-up did not install it."""
    path = shutil.which(binary)
    if path is None:
        raise AssertionError(f"{binary} is not on PATH; run scripts/bootstrap.sh")
    return path


def promtool_query(*args: str) -> list[dict]:
    """Run ``promtool query ARGS -o json`` (instant, range...) and return its parsed result."""
    result = subprocess.run(
        [require("promtool"), "query", *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def poll(check: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """Call ``check`` until it returns something truthy or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (requests.RequestException, ValueError, KeyError) as err:
            last_error = err
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


class Process:
    """A started binary whose output goes to a log file; ``stop()`` ends it."""

    def __init__(self, args: list[str], log: Path):
        self.args = args
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def promtool_backfill(openmetrics: Path, data_dir: Path) -> None:
    """Create TSDB blocks from an OpenMetrics file with promtool."""
    result = subprocess.run(
        [
            require("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(openmetrics),
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def start_prometheus(
    workdir: Path, config: str, data_dir: Path | None = None, port: int | None = None
) -> tuple[Process, str]:
    """Start Prometheus with ``config`` (YAML text) on ``port`` (default: a free one)."""
    port = port or free_port()
    cfg = workdir / "prometheus.yml"
    cfg.write_text(config)
    data_dir = data_dir or workdir / "data"
    proc = Process(
        [
            require("prometheus"),
            f"--config.file={cfg}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        workdir / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"

    def ready():
        if proc.proc.poll() is not None:
            raise AssertionError("prometheus exited:\n" + proc.output())
        return requests.get(url + "/-/ready", timeout=2).status_code == 200

    try:
        poll(ready, 60, "prometheus to be ready")
    except AssertionError:
        proc.stop()
        raise
    return proc, url


def query_range(url: str, query: str, start: float, end: float, step: int) -> list[dict]:
    """Return the result of a Prometheus range query."""
    resp = requests.get(
        url + "/api/v1/query_range",
        params={"query": query, "start": start, "end": end, "step": step},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json()["data"]["result"]
