"""The exporter daemon's start-up errors and model reloads."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from linborg.bundle import SPEC, BundleError, load_bundle
from linborg.exporter.server import ModelHolder

ROOT = Path(__file__).resolve().parents[1]


def run_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "linborg", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_bundle_or_bad_config_exit_2_with_a_clear_message(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"model: {{bundle: '{tmp_path / 'nowhere'}'}}\n")
    r = run_serve(f"--config.file={cfg}")
    assert r.returncode == 2 and "no such directory" in r.stderr and "Traceback" not in r.stderr
    cfg.write_text("interval: often\nthreads: -1\n")
    r = run_serve(f"--config.file={cfg}")
    assert r.returncode == 2
    assert "interval: 'often' is not a duration" in r.stderr and "threads:" in r.stderr


class Holder:
    def __init__(self):
        from linborg.exporter.cycle import Stats

        self.forecaster = "the old model"
        self.stats = Stats()


def test_a_bad_bundle_on_reload_is_refused_and_the_old_one_keeps_serving(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(
        ROOT / "models" / "default", bundle, ignore=shutil.ignore_patterns("evaluation")
    )
    exporter = Holder()
    holder = ModelHolder(exporter, str(bundle))
    spec = json.loads((bundle / SPEC).read_text())
    spec["metrics"] = spec["metrics"][:-1]
    (bundle / SPEC).write_text(json.dumps(spec))
    holder.check_files()  # the file changed: reload is tried and refused
    assert exporter.forecaster == "the old model" and holder.reload_failures == 1
    assert exporter.stats.model_reload_failures == 1  # linborg_model_reload_failures_total
    spec["metrics"] = json.loads((ROOT / "models" / "default" / SPEC).read_text())["metrics"]
    (bundle / SPEC).write_text(json.dumps(spec))
    holder.reload("SIGHUP")
    assert exporter.forecaster != "the old model" and holder.reloads == 1
    assert exporter.stats.model_reloads == 1
    # A change to the plain-host network's files is a change to the bundle too.
    plain_spec = bundle / "plain" / SPEC
    plain_spec.write_text(plain_spec.read_text().replace('"metrics"', '"metrics_"', 1))
    holder.check_files()
    assert holder.reload_failures == 2 and holder.reloads == 1


def _bundle_copy(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(
        ROOT / "models" / "default", bundle, ignore=shutil.ignore_patterns("evaluation")
    )
    return bundle


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda hp: hp.update(embedding_sizes={}), "embedding_sizes has no 'profile' embedding"),
        (lambda hp: hp.update(hidden_size=-1), "hidden_size -1 (expected an integer in 1..1024)"),
        (lambda hp: hp.update(hidden_size=1_000_000), "hidden_size 1000000"),
        (lambda hp: hp.update(lstm_layers="two"), "lstm_layers 'two'"),
    ],
)
def test_implausible_bundles_are_refused_before_anything_is_built(tmp_path, change, reason):
    bundle = _bundle_copy(tmp_path)
    spec = json.loads((bundle / SPEC).read_text())
    change(spec["hparams"])
    (bundle / SPEC).write_text(json.dumps(spec))
    exporter = Holder()
    holder = ModelHolder(exporter, str(bundle))
    holder.reload("SIGHUP")  # must not raise
    assert exporter.forecaster == "the old model" and holder.reload_failures == 1
    with pytest.raises(BundleError, match=re.escape(reason)):
        load_bundle(bundle)


def test_an_unreadable_bundle_is_refused_on_reload_and_at_start_up(tmp_path):
    import os

    if os.geteuid() == 0:
        # root reads any file: make the read itself fail instead (a folder named model.json).
        bundle = _bundle_copy(tmp_path)
        (bundle / SPEC).unlink()
        (bundle / SPEC).mkdir()
    else:
        bundle = _bundle_copy(tmp_path)
        (bundle / SPEC).chmod(0)
    exporter = Holder()
    holder = ModelHolder(exporter, str(bundle))
    holder.reload("SIGHUP")
    assert exporter.forecaster == "the old model" and holder.reload_failures == 1
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"model: {{bundle: '{bundle}'}}\n")
    r = run_serve(f"--config.file={cfg}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "model bundle" in r.stderr


def test_a_weights_file_declaring_too_many_parameters_is_refused_from_its_header(tmp_path):
    from linborg import bundle as bundle_module

    bundle = _bundle_copy(tmp_path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [100_000, 1_000], "data_offsets": [0, 4]}})
    raw = header.encode()
    (bundle / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 4)
    with pytest.raises(BundleError, match="100,000,000 parameters, more than the limit"):
        load_bundle(bundle)
    assert bundle_module.MAX_PARAMETERS < 100_000_000


class Front:
    """An ExporterHTTPServer on loopback with small limits, serving an empty exporter."""

    def __init__(self, **limits):
        from realstack import free_port

        from linborg.exporter.collector import MetricsPage
        from linborg.exporter.config import config_from_dict
        from linborg.exporter.cycle import Exporter
        from linborg.exporter.server import ExporterHTTPServer, make_handler
        from linborg.thresholds import load_thresholds

        self.exporter = Exporter(config_from_dict({}), None, None, load_thresholds())
        self.page = MetricsPage(self.exporter)
        self.port = free_port()
        handler = make_handler(self.page, lambda: (True, "ready"), idle_timeout=1.0)
        self.httpd = ExporterHTTPServer(
            ("127.0.0.1", self.port),
            handler,
            idle_timeout=1.0,
            dropped=self.exporter.stats.connections_dropped,
            **limits,
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.sockets: list[socket.socket] = []

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        for s in self.sockets:
            s.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.sockets.append(s)
        return s

    def dropped(self, reason: str) -> float:
        text = self.page.render().decode()
        prefix = f'linborg_exporter_connections_dropped_total{{reason="{reason}"}} '
        (line,) = [x for x in text.splitlines() if x.startswith(prefix)]
        return float(line.removeprefix(prefix))


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_silent_connections_hold_no_slot_and_are_closed_after_the_idle_timeout():
    with Front(max_connections=4, max_waiting=8) as front:
        silent = [front.connect() for _ in range(8)]  # twice the request slots
        time.sleep(0.2)
        began = time.monotonic()
        r = requests.get(front.url + "/healthz", timeout=1)
        assert r.status_code == 200 and time.monotonic() - began < 1
        # Two more: the pool holds 8, so the two that waited longest are closed for them.
        for _ in range(2):
            front.connect()
        assert silent[0].recv(16) == b"" and silent[1].recv(16) == b""
        wait_for(lambda: front.dropped("max_waiting") == 2, 2, "two evictions")
        # The rest are closed once they have said nothing for the idle timeout (1s).
        for s in silent[2:]:
            assert s.recv(16) == b""
        wait_for(lambda: front.dropped("idle_timeout") == 8, 3, "eight idle timeouts")
        assert front.dropped("max_connections") == 0
        assert front.httpd.refused_connections == 0


def test_requests_beyond_max_connections_are_answered_503_until_slots_free_up():
    with Front(max_connections=4) as front:
        for _ in range(4):  # a request line and no end of headers: each holds a slot
            front.connect().sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        extra = front.connect()
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        assert front.httpd.refused_connections == 1 and front.dropped("max_connections") == 1
        # The handler gives up on the unfinished requests after 1s; scrapes get through again.
        wait_for(
            lambda: requests.get(front.url + "/healthz", timeout=1).status_code == 200,
            5,
            "healthz after the slots free up",
        )


@pytest.mark.parametrize(
    "header, zipped",
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("gzip, deflate", True),  # requests' default
        ("GZIP;Q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),  # refused explicitly
        ("gzip; q=0.000", False),
        ("deflate, gzip;q=0, br", False),
        ("identity", False),
        ("deflate, br", False),
        ("nogzip", False),  # not a substring match
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # the explicit refusal wins over the wildcard
        ("identity;q=1, gzip;q=0.5", False),  # identity preferred
        ("identity;q=0.5, gzip;q=0.5", True),
        ("gzip;q=abc", False),  # unreadable weight: plain
        ("gzip;q=2", False),
    ],
)
def test_gzip_is_chosen_by_the_accept_encoding_weights(header, zipped):
    from linborg.exporter.server import gzip_accepted

    assert gzip_accepted(header) is zipped


def test_metrics_are_sent_plain_to_a_client_that_refuses_gzip():
    import gzip
    import http.client

    with Front() as front:
        for header, encoding in (
            ("gzip;q=0", None),
            ("identity", None),
            (None, None),
            ("gzip", "gzip"),
        ):
            conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=5)
            conn.putrequest("GET", "/metrics", skip_accept_encoding=True)
            if header is not None:
                conn.putheader("Accept-Encoding", header)
            conn.endheaders()
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert resp.status == 200
            assert resp.getheader("Content-Encoding") == encoding, header
            assert resp.getheader("Vary") == "Accept-Encoding"
            text = gzip.decompress(body) if encoding else body
            assert text.startswith(b"# HELP") and b"linborg_exporter_cycles_total" in text


def test_clients_that_reset_their_connection_leave_no_traceback(capsys):
    import struct

    with Front() as front:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", front.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            s.close()  # with SO_LINGER 0: a reset, not a goodbye
        wait_for(
            lambda: requests.get(front.url + "/healthz", timeout=1).status_code == 200,
            5,
            "healthz after the resets",
        )
        time.sleep(0.5)  # let the last handler threads end
    assert "Traceback" not in capsys.readouterr().err


def test_a_bundle_without_risk_calibration_is_served_with_a_warning_that_says_so(tmp_path, caplog):
    bundle = _bundle_copy(tmp_path)
    exporter = Holder()
    holder = ModelHolder(exporter, str(bundle))
    with caplog.at_level(logging.WARNING, logger="linborg.exporter"):
        holder.reload("SIGHUP")  # the shipped bundle has one: nothing to say
    assert holder.reloads == 1 and "risk_calibration" not in caplog.text
    spec = json.loads((bundle / SPEC).read_text())
    del spec["risk_calibration"]
    (bundle / SPEC).write_text(json.dumps(spec))
    with caplog.at_level(logging.WARNING, logger="linborg.exporter"):
        holder.reload("SIGHUP")
    assert holder.reloads == 2  # served all the same
    assert "has no risk_calibration: linborg_risk_score is the raw risk" in caplog.text
    assert "linborg calibrate-risk --model" in caplog.text
