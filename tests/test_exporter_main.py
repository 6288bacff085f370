"""The exporter daemon's start-up errors and model reloads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from exporter.main import ModelHolder
from trainer.bundle import SPEC

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
