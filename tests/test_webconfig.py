"""--web.config.file: TLS and bcrypt basic auth on the exporter's HTTP front."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading

import pytest
import requests
from realstack import free_port

from linborg.contract import ContractError
from linborg.exporter.collector import MetricsPage
from linborg.exporter.config import config_from_dict
from linborg.exporter.cycle import Exporter
from linborg.exporter.server import ExporterHTTPServer, make_handler
from linborg.exporter.webconfig import load_web_config
from linborg.thresholds import load_thresholds


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(d / "tls.key"), "-out", str(d / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return d / "tls.crt", d / "tls.key"


def _web_config(tmp_path, cert) -> str:
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {cert[0]}\n  key_file: {cert[1]}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    return str(path)


def test_scrapes_need_tls_and_a_valid_user(tmp_path, cert):
    web = load_web_config(_web_config(tmp_path, cert))
    page = MetricsPage(Exporter(config_from_dict({}), None, None, load_thresholds()))
    port = free_port()
    httpd = ExporterHTTPServer(
        ("127.0.0.1", port),
        make_handler(page, lambda: (True, "ready"), web_config=web),
        tls=web.tls,
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{port}"
    try:
        assert requests.get(url + "/healthz", verify=str(cert[0]), timeout=5).status_code == 401
        bad = requests.get(url + "/metrics", auth=("prometheus", "nope"), verify=str(cert[0]))
        assert bad.status_code == 401 and "Basic" in bad.headers["WWW-Authenticate"]
        good = requests.get(url + "/metrics", auth=("prometheus", "s3cret"), verify=str(cert[0]))
        assert good.status_code == 200 and "linborg_exporter_cycles_total" in good.text
        with pytest.raises(requests.RequestException):  # plain HTTP gets no answer
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        # The server still answers after a client that spoke plain HTTP.
        again = requests.get(url + "/healthz", auth=("prometheus", "s3cret"), verify=str(cert[0]))
        assert again.status_code == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_every_problem_of_a_web_config_is_reported(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n  cert_file: /nope.crt\n  min_version: TLS10\n"
        "basic_auth_users:\n  admin: hunter2\nhttp_server_config: {}\n"
    )
    with pytest.raises(ContractError) as err:
        load_web_config(path)
    text = str(err.value)
    assert "http_server_config: unknown key" in text
    assert "cert_file and key_file are both required" in text
    assert "basic_auth_users.admin: not a bcrypt hash" in text
    r = subprocess.run(
        [sys.executable, "-m", "linborg", "serve", f"--web.config.file={path}",
         "--config.file=exporter/example.yml"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "unknown key" in r.stderr and "Traceback" not in r.stderr
