"""`linborg serve`: the exporter daemon (scheduler, HTTP endpoints, model reload on SIGHUP)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("linborg.exporter")


class ModelHolder:
    """Load the bundle, and reload it on SIGHUP or when its files change; a bad one is refused."""

    def __init__(self, exporter, path: str, threads: int):
        self.exporter = exporter
        self.path = Path(path)
        self.threads = threads
        self.stamp = self._stamp()
        self.reloads = 0
        self.reload_failures = 0

    def _stamp(self):
        try:
            return tuple((p.name, p.stat().st_mtime_ns) for p in sorted(self.path.iterdir()))
        except OSError:
            return None

    def reload(self, reason: str) -> None:
        from trainer.bundle import BundleError, load_bundle

        try:
            forecaster = load_bundle(self.path)
        except BundleError as err:
            self.reload_failures += 1
            log.error("model reload (%s) refused, keeping the current model: %s", reason, err)
            return
        self.exporter.forecaster = forecaster
        self.stamp = self._stamp()
        self.reloads += 1
        log.info("model reloaded (%s) from %s", reason, self.path)

    def check_files(self) -> None:
        stamp = self._stamp()
        if stamp is not None and stamp != self.stamp:
            self.stamp = stamp
            self.reload("bundle files changed")


def make_handler(registry, ready):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
            pass

        def _send(self, code, body: bytes, ctype="text/plain; charset=utf-8"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ok, why = ready()
                self._send(200 if ok else 503, (why + "\n").encode())
            else:
                self._send(404, b"not found\n")

    return Handler


def run(args: argparse.Namespace) -> int:
    """Start the exporter and serve until interrupted."""
    import torch
    from apscheduler.schedulers.background import BackgroundScheduler
    from prometheus_client import CollectorRegistry

    from exporter.collector import SnapshotCollector
    from exporter.config import load_config, parse_shard
    from exporter.cycle import Exporter
    from linborg.contract import ContractError
    from linborg.prom import PrometheusClient
    from linborg.thresholds import load_thresholds
    from trainer.bundle import load_bundle

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = load_config(args.config_file)
    if args.shard:
        import dataclasses

        try:
            i, n = parse_shard(args.shard)
        except ValueError as err:
            raise ContractError(f"--shard: {err}") from None
        config = dataclasses.replace(config, shard_index=i, shard_count=n)
    host, _, port = args.web_listen_address.rpartition(":")
    if not port.isdigit():
        raise ContractError(f"--web.listen-address '{args.web_listen_address}': use HOST:PORT")
    torch.set_num_threads(config.threads)
    forecaster = load_bundle(config.model_bundle)
    thresholds = load_thresholds(*([config.thresholds_file] if config.thresholds_file else []))
    client = PrometheusClient(
        config.prometheus_url,
        timeout=config.timeout_seconds,
        bearer_token_file=config.bearer_token_file,
        basic_auth_user=config.basic_auth_username,
        basic_auth_password_file=config.basic_auth_password_file,
        ca_file=config.ca_file,
    )
    exporter = Exporter(config, client, forecaster, thresholds)
    holder = ModelHolder(exporter, config.model_bundle, config.threads)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(exporter))

    def ready():
        if exporter.forecaster is None:
            return False, "no model loaded"
        if exporter.snapshot is None:
            return False, "no successful cycle yet"
        return True, "ready"

    try:
        httpd = ThreadingHTTPServer((host or "0.0.0.0", int(port)), make_handler(registry, ready))
    except OSError as err:
        raise ContractError(f"cannot listen on {args.web_listen_address}: {err.strerror}") from None
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True, name="http").start()

    def cycle():
        holder.check_files()
        began = time.monotonic()
        snap = exporter.run_once(time.time())
        if snap is None:
            log.warning("cycle failed: Prometheus gave no data; serving the last snapshot")
        else:
            log.info(
                "cycle: %d servers forecast, %d not, %.2fs",
                len(snap.servers),
                len(snap.not_forecast),
                time.monotonic() - began,
            )

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        cycle,
        "interval",
        seconds=config.interval_seconds,
        max_instances=1,
        coalesce=True,
        next_run_time=dt.datetime.now(dt.UTC),
        misfire_grace_time=config.interval_seconds,
    )
    scheduler.start()
    signal.signal(signal.SIGHUP, lambda *_: holder.reload("SIGHUP"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info(
        "serving on http://%s/metrics, shard %d/%d, model %s, pid %d",
        args.web_listen_address,
        config.shard_index,
        config.shard_count,
        config.model_bundle,
        os.getpid(),
    )
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    scheduler.shutdown(wait=False)
    httpd.shutdown()
    return 0


def add_parser(sub) -> None:
    """Add `serve` to the `linborg` parser."""
    p = sub.add_parser("serve", help="run the forecasting exporter")
    p.add_argument("--config.file", dest="config_file", default="exporter/example.yml")
    p.add_argument("--web.listen-address", dest="web_listen_address", default="127.0.0.1:9106")
    p.add_argument("--shard", help="i/N: this replica's shard (overrides the config)")
    p.set_defaults(func=run)
