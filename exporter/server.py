"""The exporter's HTTP front (/metrics, health, the forecast path API) and its model reload.

`linborg serve` (linborg.app.serve) starts them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("linborg.exporter")


def note_risk_calibration(forecaster, path) -> None:
    """Log a warning when a bundle serves the raw risk (no ``risk_calibration``): the shipped
    alert rules' risk threshold assumes risk above healthy (linborg/risk.py)."""
    if not (forecaster.spec.get("risk_calibration") or {}).get("healthy_risk"):
        log.warning(
            "model bundle %s has no risk_calibration: linborg_risk_score is the raw risk, which "
            "healthy servers often score above the alert rules' risk threshold; run "
            "`linborg calibrate-risk --model %s --data QUIET_HISTORY.parquet`",
            path,
            path,
        )


class ModelHolder:
    """Load the bundle, and reload it on SIGHUP or when its files change; a bad one is refused."""

    def __init__(self, exporter, path: str):
        self.exporter = exporter
        self.path = Path(path)
        self.stamp = self._stamp()
        self.reloads = 0
        self.reload_failures = 0

    def _stamp(self):
        from linborg.bundle import PLAIN

        try:
            files = sorted(self.path.iterdir())
            if (self.path / PLAIN).is_dir():  # the plain-host network's files count too
                files += sorted((self.path / PLAIN).iterdir())
            return tuple((str(p.relative_to(self.path)), p.stat().st_mtime_ns) for p in files)
        except OSError:
            return None

    def reload(self, reason: str) -> None:
        from linborg.bundle import BundleError, load_bundle

        try:
            forecaster = load_bundle(self.path)
        except BundleError as err:
            self._refuse(reason, str(err))
            return
        except Exception as err:  # noqa: BLE001 - a reload must never take the exporter down
            self._refuse(reason, f"{type(err).__name__}: {err}")
            return
        note_risk_calibration(forecaster, self.path)
        self.exporter.forecaster = forecaster
        self.stamp = self._stamp()
        self.reloads += 1
        self.exporter.stats.model_reloads += 1
        log.info("model reloaded (%s) from %s", reason, self.path)

    def _refuse(self, reason: str, why: str) -> None:
        self.reload_failures += 1
        self.exporter.stats.model_reload_failures += 1
        log.error("model reload (%s) refused, keeping the current model: %s", reason, why)

    def check_files(self) -> None:
        stamp = self._stamp()
        if stamp is not None and stamp != self.stamp:
            self.stamp = stamp
            self.reload("bundle files changed")


#: The HTTP front's limits. A scrape answers in well under a second even at 10,000 servers, so a
#: connection idle for IDLE_TIMEOUT_SECONDS is dropped; at most MAX_CONNECTIONS requests are
#: served at once (more are answered 503 and closed, so they cannot exhaust threads); the
#: kernel queues up to LISTEN_BACKLOG connections not yet accepted (the standard library's 5
#: gave timeouts under 200 concurrent clients). A connection that has sent nothing yet holds
#: no thread and no slot: up to MAX_WAITING_CONNECTIONS wait for their first bytes in one
#: selector (the longest-waiting is closed when a new one would exceed it), so a few hundred
#: silent sockets cannot keep /healthz or a scrape from being answered.
IDLE_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 256
LISTEN_BACKLOG = 1024
MAX_WAITING_CONNECTIONS = 4096


class ExporterHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a real listen backlog, a cap on requests served at once, and
    connections that wait for their first bytes without a thread.

    ``dropped`` counts connections closed before a request was answered, by reason
    (exporter.cycle.CONNECTION_DROP_REASONS); pass the exporter's ``Stats.connections_dropped``
    to see them on /metrics.
    """

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address,
        handler,
        max_connections: int = MAX_CONNECTIONS,
        tls=None,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        max_waiting: int = MAX_WAITING_CONNECTIONS,
        dropped: dict[str, int] | None = None,
    ):
        import queue
        import resource
        import socket

        from linborg.exporter.cycle import CONNECTION_DROP_REASONS

        self.slots = threading.BoundedSemaphore(max_connections)
        self.idle_timeout = idle_timeout
        # Never more waiting sockets than half the file descriptors this process may open.
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.max_waiting = max(1, min(max_waiting, soft // 2 if soft > 0 else max_waiting))
        self.dropped = dict.fromkeys(CONNECTION_DROP_REASONS, 0) if dropped is None else dropped
        self._accepted: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)  # a full pipe already means "wake up"
        self._watching = False
        super().__init__(address, handler)
        if tls is not None:
            # The handshake runs in the connection's own thread (finish_request), so a slow
            # or silent client cannot stall the accept loop.
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    @property
    def refused_connections(self) -> int:
        """Connections answered 503 because MAX_CONNECTIONS requests were being served."""
        return self.dropped.get("max_connections", 0)

    def _drop(self, request, reason: str, answer: bytes = b"") -> None:
        """Count, send ``answer`` (if any) and close a connection not served."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if answer:
            with contextlib.suppress(OSError, ValueError):
                request.sendall(answer)
        self.shutdown_request(request)

    def handle_error(self, request, client_address):
        """Log a client that went away in one line; anything else with its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("HTTP front: %s went away: %s", client_address, error)
            return
        log.exception("HTTP front: request from %s failed", client_address)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections, and watch the waiting ones in a second thread, until shutdown."""
        watcher = threading.Thread(target=self._watch, name="http-waiting", daemon=True)
        self._watching = True
        watcher.start()
        try:
            super().serve_forever(poll_interval)
        finally:
            self._watching = False
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")
            watcher.join(10)

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def process_request(self, request, client_address):
        """Hand a new connection to the watcher; a thread is started once it sends something."""
        self._accepted.put((request, client_address))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _watch(self) -> None:
        """Own the waiting connections: serve those that send, close those idle too long."""
        import selectors

        waiting: dict = {}  # socket -> (client address, deadline), oldest first
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            while self._watching:
                try:
                    self._watch_once(selector, waiting)
                except Exception:  # noqa: BLE001 - the watcher must outlive any one connection
                    log.exception("HTTP front: watching waiting connections failed")
                    time.sleep(0.1)
            for sock in waiting:
                self.shutdown_request(sock)

    def _watch_once(self, selector, waiting: dict) -> None:
        """Wait up to 0.5 s (or the next deadline) and act on what happened."""
        import queue
        import selectors

        timeout = 0.5
        if waiting:
            _, first_deadline = next(iter(waiting.values()))
            timeout = min(timeout, max(0.0, first_deadline - time.monotonic()))
        for key, _ in selector.select(timeout):
            sock = key.fileobj
            if sock is self._wake_r:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
                continue
            selector.unregister(sock)
            address, _ = waiting.pop(sock)
            self._start(sock, address)
        while True:  # connections accepted since: wait for their first bytes
            try:
                sock, address = self._accepted.get_nowait()
            except queue.Empty:
                break
            if len(waiting) >= self.max_waiting:
                oldest = next(iter(waiting))
                del waiting[oldest]
                selector.unregister(oldest)
                self._drop(oldest, "max_waiting")
            try:
                selector.register(sock, selectors.EVENT_READ)
            except (OSError, ValueError):
                self.shutdown_request(sock)  # closed already
                continue
            waiting[sock] = (address, time.monotonic() + self.idle_timeout)
        now = time.monotonic()
        while waiting:  # oldest first: the deadlines are in the same order
            sock, (_, deadline) = next(iter(waiting.items()))
            if deadline > now:
                break
            del waiting[sock]
            selector.unregister(sock)
            self._drop(sock, "idle_timeout")

    def _start(self, request, client_address) -> None:
        """Serve a connection that sent its first bytes in its own thread, if a slot is free."""
        if not self.slots.acquire(blocking=False):
            answer = (
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 21\r\n"
                b"Connection: close\r\n\r\ntoo many connections\n"
            )
            self._drop(request, "max_connections", answer)
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # noqa: BLE001 - e.g. no thread can be started: drop this one
            log.exception("HTTP front: cannot serve a connection")
            self.slots.release()
            self.shutdown_request(request)

    def finish_request(self, request, client_address):
        import ssl

        if isinstance(request, ssl.SSLSocket):
            request.settimeout(self.idle_timeout)
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError):
                return  # not TLS, or gave up: close without an answer
        super().finish_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def gzip_accepted(accept_encoding: str | None) -> bool:
    """Return whether an Accept-Encoding header value accepts gzip (RFC 9110, 12.5.3).

    gzip (or x-gzip) must be listed with a q-value above 0, or not listed and covered by a
    ``*`` above 0: ``gzip;q=0`` and a bare ``identity`` get plain text. An ``identity`` with a
    higher q-value than gzip wins, and a q-value that does not parse counts as 0 (when in doubt
    the text goes plain, which every client reads).
    """
    weights: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if not coding:
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
                if not 0 <= weight <= 1:  # NaN included
                    weight = 0.0
        coding = coding.lower()
        weights[coding] = min(weight, weights.get(coding, 1.0))  # listed twice: the lower
    gzip = weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0)))
    return gzip > 0 and gzip >= weights.get("identity", 0.0)


def make_handler(
    page, ready, api=None, idle_timeout: float = IDLE_TIMEOUT_SECONDS, web_config=None
):
    """Return the HTTP handler: /metrics, /healthz, /readyz and the forecast path API."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from linborg.exporter.promapi import ForecastPathAPI

    if api is None:
        api = ForecastPathAPI(page.exporter, page.clock)

    class Handler(BaseHTTPRequestHandler):
        # Every read and write on the connection gives up after this long: an idle or
        # trickling client is dropped instead of holding a thread and a socket.
        timeout = idle_timeout

        def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
            pass

        def _send(self, code, body: bytes, ctype="text/plain; charset=utf-8"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _api(self, method: str):
            code, body = api.serve(method, self.path, self.headers, self.rfile)
            self._send(code, body, "application/json")

        def _denied(self) -> bool:
            """Answer 401 unless the request passes --web.config.file's basic auth."""
            if web_config is None or web_config.authorized(self.headers.get("Authorization")):
                return False
            body = b"unauthorized\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="linborg"')
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True

        def do_GET(self):  # noqa: N802 - the stdlib's name
            if self._denied():
                return
            path = self.path.split("?", 1)[0]
            if path.startswith("/api/v1/"):
                self._api("GET")
            elif path == "/metrics":
                zipped = gzip_accepted(self.headers.get("Accept-Encoding"))
                parts = page.render_parts(gzipped=zipped)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Vary", "Accept-Encoding")
                if zipped:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(sum(len(b) for b in parts)))
                self.end_headers()
                for part in parts:
                    self.wfile.write(part)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ok, why = ready()
                self._send(200 if ok else 503, (why + "\n").encode())
            else:
                self._send(404, b"not found\n")

        def do_POST(self):  # noqa: N802 - the stdlib's name
            if self._denied():
                return
            if self.path.startswith("/api/v1/"):
                self._api("POST")
            else:
                self._send(405, b"method not allowed\n")

    return Handler
