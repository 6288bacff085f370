"""A tiny webhook sink: records what Alertmanager would have sent to PagerDuty or Slack.

Every POST, on any path, is answered 200 and recorded as one JSON line
``{"received_at": ..., "path": ..., "body": ...}`` (the body parsed as JSON when it is JSON,
else as text). A body over MAX_BODY_BYTES is answered 413 and a Content-Length that is not a
number 400, and neither is stored; the summary line printed per request has control
characters escaped, so alert text cannot move the cursor or forge log lines.
``GET /healthz`` answers 200; ``GET /received`` returns the last MAX_RECORDS records.

``serve(host, port, log_path)`` runs it in the foreground (the ``linborg sink`` command);
``WebhookSink`` runs it in a thread for tests. Nothing starts on import.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

#: Largest body stored (Alertmanager's notifications are a few kilobytes each).
MAX_BODY_BYTES = 1_000_000
#: Records kept in memory for GET /received (the log file keeps every one).
MAX_RECORDS = 10_000


def printable(text: str) -> str:
    """Return ``text`` with control characters (newlines, ANSI escapes) shown as escapes."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def summarize(path: str, body: object) -> str:
    """Return a short description of a received payload (PagerDuty, Slack or other)."""
    if isinstance(body, dict):
        payload = body.get("payload")
        if isinstance(payload, dict) and "summary" in payload:  # PagerDuty Events v2
            return f"{body.get('event_action', '?')}: {payload['summary']}"
        attachments = body.get("attachments")
        if isinstance(attachments, list) and attachments and isinstance(attachments[0], dict):
            return f"{body.get('channel', '')} {attachments[0].get('title', '')}".strip()
        if "alerts" in body and "status" in body:  # Alertmanager's own webhook format
            return f"{body['status']}: {len(body['alerts'])} alert(s) for {body.get('receiver')}"
    text = body if isinstance(body, str) else json.dumps(body)
    return text[:120]


class WebhookSink:
    """Record webhook POSTs in memory and, optionally, as JSON lines in ``log_path``.

    ``start()`` binds ``host:port`` (port 0: a free one) and serves from a thread; ``url`` is
    then the base URL, ``received()`` the records so far and ``stop()`` shuts it down.
    ``stream`` gets one summary line per request (None: silent).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        stream: TextIO | None = None,
    ):
        self.host = host
        self.port = port
        self.log_path = Path(log_path) if log_path is not None else None
        self.stream = stream
        self._records: list[dict] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:9099``."""
        if self._server is None:
            raise RuntimeError("the sink is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def received(self, path_prefix: str = "") -> list[dict]:
        """Return a copy of the records whose path starts with ``path_prefix``."""
        with self._lock:
            return [r for r in self._records if r["path"].startswith(path_prefix)]

    def record(self, path: str, raw: bytes) -> dict:
        """Store one request body and return its record."""
        text = raw.decode("utf-8", errors="replace")
        try:
            body: object = json.loads(text)
        except ValueError:
            body = text
        entry = {
            "received_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "path": path,
            "body": body,
        }
        line = json.dumps(entry)
        with self._lock:
            self._records.append(entry)
            del self._records[:-MAX_RECORDS]
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as f:
                    f.write(line + "\n")
            if self.stream is not None:
                print(
                    printable(
                        f"{entry['received_at']} POST {path} ({len(raw)} bytes) "
                        f"{summarize(path, body)}"
                    ),
                    file=self.stream,
                    flush=True,
                )
        return entry

    def bind(self) -> ThreadingHTTPServer:
        """Create the HTTP server on ``host:port`` (not yet serving) and return it."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._server.daemon_threads = True
        return self._server

    def start(self) -> WebhookSink:
        """Bind and serve from a daemon thread; return self."""
        server = self.bind()
        self._thread = threading.Thread(target=server.serve_forever, name="webhook-sink")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(5)
            self._server.server_close()
        self._server = None
        self._thread = None

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler_for(sink: WebhookSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "linborg-sink"

        def _reply(self, status: int, doc: object) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            raw = (self.headers.get("Content-Length") or "0").strip()
            if not raw.isdigit():
                self.close_connection = True  # the body's end is unknown: do not read it
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "Content-Length is not a number"})
                return
            length = int(raw)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._reply(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    {"error": f"body of {length} bytes, over {MAX_BODY_BYTES}"},
                )
                return
            sink.record(self.path, self.rfile.read(length))
            self._reply(HTTPStatus.OK, {"status": "success"})

        def do_GET(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            if path == "/healthz":
                self._reply(HTTPStatus.OK, {"status": "ok"})
            elif path == "/received":
                self._reply(HTTPStatus.OK, sink.received())
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            """Stay quiet: the sink prints its own line per POST."""

    return Handler


def serve(host: str, port: int, log_path: Path | None, stream: TextIO | None = None) -> None:
    """Serve the sink in the foreground until interrupted."""
    stream = stream if stream is not None else sys.stdout
    sink = WebhookSink(host, port, log_path, stream)
    server = sink.bind()
    where = f", appending to {log_path}" if log_path is not None else ""
    print(f"linborg sink listening on {sink.url}{where}", file=stream, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
