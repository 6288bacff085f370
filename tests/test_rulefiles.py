"""The committed rule files are exactly what `linborg rules` generates (file set and bytes)."""

from __future__ import annotations

from pathlib import Path

from linborg.app.cli import main
from linborg.mixin.rulefiles import RULE_FILES

COMMITTED = Path(__file__).resolve().parent.parent / "prometheus" / "rules"


def test_rules_regenerate_into_an_empty_folder_identically(tmp_path, capsys):
    out = tmp_path / "rules"
    assert main(["rules", "--out", str(out)]) == 0
    generated = sorted(p.name for p in out.iterdir())
    assert generated == sorted(RULE_FILES)
    assert sorted(p.name for p in COMMITTED.iterdir()) == generated, (
        "prometheus/rules/ holds files `linborg rules` does not write (stale or hand-made)"
    )
    for name in generated:
        assert (out / name).read_bytes() == (COMMITTED / name).read_bytes(), (
            f"prometheus/rules/{name} is stale: run `linborg rules` and commit"
        )
    assert str(out / "linborg.alerts.yml") in capsys.readouterr().out
