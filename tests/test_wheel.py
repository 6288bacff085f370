"""The wheel works anywhere: one top-level package, its run-time files inside, no checkout needed.

The wheel is built from a clean copy of the checkout's files (a stale build/ folder could
otherwise add modules that no longer exist), installed with --no-deps into a new virtualenv
outside the checkout that reaches the dependencies through a .pth file, and run from an empty
folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import requests
from realstack import free_port, poll

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd, cwd, env, timeout=180) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}: {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INDEX"] = "1"
    return env


def _source_copy(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, listed):
        src = ROOT / os.fsdecode(rel)
        if src.is_file():
            target = dest / os.fsdecode(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    env = _clean_env()
    src = _source_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(src)],
        tmp_path, env,
    )  # fmt: skip
    (wheel,) = wheels.glob("linborg-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"linborg", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for data in (
        "linborg/thresholds.yaml",
        "linborg/models/default/model.json",
        "linborg/models/default/model.safetensors",
        "linborg/models/default/plain/model.json",
        "linborg/models/default/plain/model.safetensors",
        "linborg/prometheus/prometheus.yml",
        "linborg/prometheus/rules/linborg.alerts.yml",
        "linborg/alertmanager/alertmanager.yml",
        "linborg/alertmanager/templates/linborg.tmpl",
        "linborg/exporter/cycle.py",
        "linborg/trainer/train.py",
    ):
        assert data in names, f"{data} is not in the wheel"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            tmp_path,
            env,
        ).stdout.strip()
    )
    # The dependencies, without reinstalling them: a plain path line adds the current
    # site-packages to sys.path but does not run its .pth files, so the checkout's
    # editable-install finder stays inactive in the new virtualenv.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         str(wheel)],
        tmp_path, env,
    )  # fmt: skip

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run(
        [
            str(python),
            "-c",
            "import linborg, linborg.exporter.cycle as c, sys\n"
            "from linborg.app import stack\n"
            "print(linborg.__file__); print(c.__file__)\n"
            "assert (stack.PROMETHEUS_DIR / 'rules' / 'linborg.alerts.yml').is_file()\n"
            "assert (stack.ALERTMANAGER_DIR / 'alertmanager.yml').is_file()\n"
            "assert (stack.DEFAULT_MODEL / 'model.safetensors').is_file()\n"
            "assert '__editable___linborg_0_1_0_finder' not in sys.modules\n",
        ],
        work,
        env,
    ).stdout.split()
    for path in where:
        assert Path(path).is_relative_to(venv), f"{path} is not from the new virtualenv"

    linborg = str(venv / "bin" / "linborg")
    assert "--config.file" in _run([linborg, "serve", "--help"], work, env).stdout
    _run([linborg, "rules", "--out", "rules"], work, env)
    assert (work / "rules" / "linborg.alerts.yml").is_file()
    assert (work / "rules" / "node_exporter.rules.yml").is_file()
    _run([linborg, "dashboards", "--out", "dashboards"], work, env)
    assert len(list((work / "dashboards").glob("*.json"))) == 6
    contract = _run([linborg, "contract"], work, env).stdout
    assert contract.startswith("LINBORG contract") and "cpu_user_pct" in contract

    # `linborg serve` with no flags: every key at its default and the packaged model, since
    # the empty folder has no exporter/example.yml and no models/default.
    port = free_port()
    proc = subprocess.Popen(
        [linborg, "serve", "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def page() -> str:
            assert proc.poll() is None, f"serve exited {proc.returncode}: {proc.stderr.read()}"
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return text if "linborg_model_info{" in text else ""

        text = poll(page, 120, "linborg serve to load the packaged model")
        assert 'linborg_threshold{level="warning",metric="cpu_user_pct",profile="database"}' in text
    finally:
        proc.terminate()
        proc.wait(30)
