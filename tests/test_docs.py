"""Generated documents stay in step with the code that generates them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_contract_page_matches_the_contract():
    out = subprocess.run(
        [sys.executable, "-m", "linborg", "contract", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    committed = (ROOT / "docs" / "contract.md").read_text()
    assert out == committed, "docs/contract.md is stale: run `linborg contract --markdown`"


def test_generator_report_regenerates_identically(tmp_path):
    from linborg.generator.report import write_report

    readme = write_report(tmp_path, seed=7, days=14)
    committed = ROOT / "docs" / "generator-report"
    assert readme.read_text() == (committed / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in committed.iterdir())
    for png in ("daily_profiles.png", "incidents.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "    bash scripts/test.sh\n" in readme
    assert "\nbash scripts/test.sh\n" in ci


def test_configuration_reference_matches_the_schema():
    out = subprocess.run(
        [sys.executable, "-m", "linborg", "serve", "--print-config-reference"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == (ROOT / "docs" / "configuration.md").read_text()
