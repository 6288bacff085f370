"""The exporter daemon's start-up errors and model reloads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.main import ModelHolder
from trainer.bundle import SPEC, BundleError, load_bundle

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
        from exporter.cycle import Stats

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
    from trainer import bundle as bundle_module

    bundle = _bundle_copy(tmp_path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [100_000, 1_000], "data_offsets": [0, 4]}})
    raw = header.encode()
    (bundle / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 4)
    with pytest.raises(BundleError, match="100,000,000 parameters, more than the limit"):
        load_bundle(bundle)
    assert bundle_module.MAX_PARAMETERS < 100_000_000


def test_idle_connections_are_capped_and_dropped_and_healthz_keeps_answering():
    import socket
    import threading
    import time

    import requests
    from realstack import free_port

    from exporter.collector import MetricsPage
    from exporter.config import config_from_dict
    from exporter.cycle import Exporter
    from exporter.main import ExporterHTTPServer, make_handler

    page = MetricsPage(Exporter(config_from_dict({}), None, None, None))
    port = free_port()
    handler = make_handler(page, lambda: (True, "ready"), idle_timeout=1.0)
    httpd = ExporterHTTPServer(("127.0.0.1", port), handler, max_connections=4)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    idle = []
    try:
        assert httpd.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        for _ in range(4):  # connect and say nothing, holding every slot
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        assert httpd.refused_connections >= 1
        # The idle ones are dropped after the idle timeout; then scrapes get through again.
        deadline = time.monotonic() + 5
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "healthz did not come back"
            time.sleep(0.1)
        for s in idle:
            assert s.recv(16) == b""  # closed by the server
    finally:
        for s in idle:
            s.close()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
