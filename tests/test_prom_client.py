"""The Prometheus client: chunking, auth from files, and every failure as a PrometheusError."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from linborg.prom import MAX_POINTS_PER_QUERY, PrometheusClient, PrometheusError


class Fake:
    """A loopback HTTP server whose answer the test chooses."""

    def __init__(self):
        self.mode = "ok"
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                fake.requests.append(({k: v[0] for k, v in body.items()}, dict(self.headers)))
                code, out = fake.answer(body)
                self.send_response(code)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, body):
        if self.mode == "5xx":
            return 503, b'{"status":"error","errorType":"unavailable","error":"overloaded"}'
        if self.mode == "html":
            return 502, b"<html>bad gateway</html>"
        if self.mode == "partial":
            return 200, b'{"status":"success","data":{"resultType":"matrix","result":[{"metric"'
        if self.mode == "no_result":
            return 200, b'{"status":"success","data":{}}'
        if self.mode == "bad_series":
            return 200, b'{"status":"success","data":{"result":[{"metric":{},"values":[["x"]]}]}}'
        if self.mode == "slow":
            time.sleep(2)
        if "start" not in body:  # an instant query
            doc = {"status": "success", "data": {"result": [{"metric": {}, "value": [0, "1"]}]}}
            return 200, json.dumps(doc).encode()
        start, end, step = (float(body[k][0]) for k in ("start", "end", "step"))
        n = int((end - start) // step) + 1
        values = [[start + i * step, "1.5" if i else "NaN"] for i in range(n)]
        doc = {
            "status": "success",
            "data": {"result": [{"metric": {"server": "a"}, "values": values}]},
        }
        return 200, json.dumps(doc).encode()


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.httpd.shutdown()


def test_long_ranges_are_chunked_under_the_point_limit_and_merged(fake):
    client = PrometheusClient(fake.url)
    step = 300
    end = 25_000 * step
    (series,) = client.query_range("m", 0, end, step)
    assert len(series.timestamps) == 25_001
    assert len(fake.requests) == 3
    for body, _ in fake.requests:
        points = (float(body["end"]) - float(body["start"])) / step + 1
        assert points <= MAX_POINTS_PER_QUERY
    assert series.timestamps[0] == 0 and series.timestamps[-1] == end
    assert client.bytes_received > 0


def test_secrets_come_from_files(fake, tmp_path):
    token = tmp_path / "token"
    token.write_text("abc123\n")
    PrometheusClient(fake.url, bearer_token_file=str(token)).query_range("m", 0, 300, 300)
    assert fake.requests[-1][1]["Authorization"] == "Bearer abc123"
    pw = tmp_path / "pw"
    pw.write_text("hunter2")
    PrometheusClient(fake.url, basic_auth_user="u", basic_auth_password_file=str(pw)).query("m", 0)
    assert fake.requests[-1][1]["Authorization"].startswith("Basic ")
    with pytest.raises(PrometheusError, match="cannot read bearer token file"):
        PrometheusClient(fake.url, bearer_token_file=str(tmp_path / "nope")).query("m", 0)


@pytest.mark.parametrize(
    "mode, message",
    [
        ("5xx", "answered HTTP 503: overloaded"),
        ("html", "answered HTTP 502 with something that is not JSON"),
        ("partial", "answered HTTP 200 with something that is not JSON"),
        ("no_result", "answered without a result list"),
        ("bad_series", "malformed series in the response"),
    ],
)
def test_bad_answers_become_clear_errors(fake, mode, message):
    fake.mode = mode
    with pytest.raises(PrometheusError, match=message):
        PrometheusClient(fake.url).query_range("m", 0, 600, 300)


def test_slow_and_unreachable_servers(fake):
    fake.mode = "slow"
    with pytest.raises(PrometheusError, match="did not answer within 0.5s"):
        PrometheusClient(fake.url, timeout=0.5).query_range("m", 0, 300, 300)
    url = fake.url
    fake.httpd.shutdown()
    fake.httpd.server_close()
    with pytest.raises(PrometheusError, match="cannot reach"):
        PrometheusClient(url, timeout=1).query("m", 0)
