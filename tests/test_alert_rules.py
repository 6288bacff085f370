"""The generated alert rules: current, valid for promtool, unit-tested, documented and linked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import output_of_fresh_python
from realstack import require

from linborg import families as F
from linborg import mixin
from linborg.contract import METRIC_NAMES, METRICS, PROFILE_NAMES
from linborg.duration import parse_duration
from linborg.exporter.config import DEFAULT_HORIZONS
from linborg.mixin import CONFIG, alert_rules, quality_rules
from linborg.mixin.rulefiles import HEADER, RULE_FILES
from linborg.risk import assess
from linborg.thresholds import load_thresholds

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "prometheus" / "rules" / "linborg.alerts.yml"
UNIT_TESTS = ROOT / "prometheus" / "tests" / "alerts_test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
GOLDEN = ROOT / "tests" / "golden" / "metrics.txt"

#: dashboard_url comes on top where a grafana_url is configured (not by default).
ALL_ANNOTATIONS = {"summary", "description", "threshold", "runbook_url"}
PREDICTED_ANNOTATIONS = ALL_ANNOTATIONS | {"current_value", "predicted_value", "lead_time"}
#: Exporter series that carry the real server and profile labels.
PER_SERVER_SERIES = {F.RISK_SCORE, F.TIME_TO_BREACH_SECONDS, F.DATA_COMPLETENESS_RATIO}


def _rules(text: str | None = None) -> list[dict]:
    doc = yaml.safe_load(RULES.read_text() if text is None else text)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alertnames() -> list[str]:
    return sorted({rule["alert"] for rule in _rules()})


def _is_predicted(rule: dict) -> bool:
    return F.TIME_TO_BREACH_SECONDS in rule["expr"]


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def _github_anchor(heading: str) -> str:
    """Return the anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _exported_names() -> set[str]:
    """Return every series name the exporter exposes, from the golden /metrics text."""
    names = set()
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
    assert names, f"{GOLDEN} has no # TYPE lines"
    return names


# --- generated and valid ------------------------------------------------------------------------


def test_committed_rule_file_is_what_linborg_rules_writes():
    module = RULE_FILES[RULES.name]
    assert module == alert_rules.__name__
    expected = HEADER.format(module=module.replace(".", "/")) + alert_rules.render()
    assert RULES.read_text() == expected, f"{RULES} is stale: run `linborg rules`"


def test_render_is_deterministic():
    code = (
        "import sys\nfrom linborg.mixin import alert_rules\nsys.stdout.write(alert_rules.render())"
    )
    first = output_of_fresh_python(code, hash_seed=1)
    assert first == output_of_fresh_python(code, hash_seed=2)
    assert first == alert_rules.render()


def test_promtool_check_rules_passes():
    out = _promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_unit_tests_pass():
    out = _promtool("test", "rules", str(UNIT_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_unit_tests_load_the_committed_rule_file():
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    assert doc["rule_files"] == ["../rules/linborg.alerts.yml"]
    assert (UNIT_TESTS.parent / doc["rule_files"][0]).resolve() == RULES


def test_every_alert_and_severity_is_unit_tested_on_both_sides():
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    quiet: set[str] = set()
    firing: set[tuple[str, str]] = set()
    for group in doc["tests"]:
        assert group.get("name"), "every test group is named after the behaviour it proves"
        for case in group.get("alert_rule_test", []):
            alerts = case.get("exp_alerts") or []
            if not alerts:
                quiet.add(case["alertname"])
            for alert in alerts:
                labels = alert["exp_labels"]
                assert {"severity", "server", "profile"} <= set(labels), (group["name"], labels)
                assert alert.get("exp_annotations"), group["name"]
                firing.add((case["alertname"], labels["severity"]))
    wanted = {(rule["alert"], rule["labels"]["severity"]) for rule in _rules()}
    assert wanted - firing == set(), "rules without a firing test case"
    assert set(_alertnames()) - quiet == set(), "alerts without a not-firing test case"


# --- labels, annotations and links --------------------------------------------------------------


def test_every_alert_has_severity_server_profile_and_the_annotations():
    for rule in _rules():
        name = rule["alert"]
        labels = rule.get("labels", {})
        assert labels.get("severity") in ("critical", "warning"), name
        if not {"server", "profile"} <= set(labels):
            # Then they must come from an exporter series that carries them, never aggregated.
            first = re.match(r"\s*(?:label_replace\()?([a-z_]+)\{", rule["expr"]).group(1)
            assert first in PER_SERVER_SERIES, (name, rule["expr"])
            assert not re.search(r"\b(sum|avg|max|min|count|topk)\b", rule["expr"]), name
        wanted = PREDICTED_ANNOTATIONS if _is_predicted(rule) else ALL_ANNOTATIONS
        missing = wanted - set(rule.get("annotations", {}))
        assert not missing, f"{name} lacks annotations {sorted(missing)}"
        assert all(v.strip() for v in rule["annotations"].values()), name


def test_absent_based_alerts_name_server_and_profile_themselves():
    absent = [rule for rule in _rules() if "absent(" in rule["expr"]]
    assert absent
    for rule in absent:
        assert "{{" not in rule["labels"]["server"], "absent() has no instance label to use"
        assert rule["labels"]["profile"]


def test_every_runbook_url_points_at_a_section_of_docs_runbooks():
    text = RUNBOOKS.read_text()
    anchors = {_github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}
    # The default base is the runbooks' path in this repository: it exists.
    base = CONFIG["runbook_base_url"]
    assert not mixin.is_absolute(base) and (ROOT / base).resolve() == RUNBOOKS
    assert _rules()
    for rule in _rules():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(base + "#"), url
        assert url.split("#", 1)[1] in anchors, f"{url}: no such section in {RUNBOOKS.name}"
    # Links between sections resolve too.
    for target in re.findall(r"\]\(#([^)]+)\)", text):
        assert target in anchors, f"docs/runbooks.md links to missing #{target}"


def test_no_dashboard_url_without_a_grafana_url():
    assert CONFIG["grafana_url"] is None
    for rule in _rules():
        assert "dashboard_url" not in rule["annotations"], rule["alert"]


def test_with_a_grafana_url_every_alert_links_a_known_dashboard():
    grafana = "https://grafana.example"
    rules = _rules(alert_rules.render({"grafana_url": grafana + "/"}))
    for rule in rules:
        url = rule["annotations"]["dashboard_url"]
        assert url.startswith(f"{grafana}/d/"), url
        uid = re.match(r"[^?#/]+", url[len(f"{grafana}/d/") :]).group(0)
        assert uid in CONFIG["dashboard_uids"].values(), f"{rule['alert']}: unknown dashboard {uid}"
        per_server = "server" not in rule.get("labels", {})
        assert ("var-server={{ $labels.server }}" in url) == per_server, url


def test_every_linborg_series_used_is_one_the_exporter_exposes():
    exposed = _exported_names()
    for rule in _rules():
        text = rule["expr"] + " ".join(rule["annotations"].values())
        # The current value is the quality rules' per-server actual, or the contract's source
        # series (tested below), not an exporter series.
        text = text.replace(alert_rules.CURRENT_VALUE_QUERY, "")
        for name in re.findall(r"\blinborg_[a-z0-9_]+", text):
            assert name in exposed, f"{rule['alert']} uses {name}, not on the exporter's /metrics"


def test_every_exporter_series_selected_carries_the_job_selector():
    """Expressions and the annotations' queries select exporter families in the job only."""
    job = CONFIG["exporter_selector"]
    in_template = job.replace('"', "'")
    checked = 0
    for rule in _rules():
        queries = re.findall(r'printf "([^"]*)"', " ".join(rule["annotations"].values()))
        for text in (rule["expr"], *queries):
            for name in F.ON_METRICS:
                for found in re.finditer(rf"\b{name}\b(\{{[^}}]*\}})?", text):
                    selector = found.group(1) or ""
                    assert job in selector or in_template in selector, (rule["alert"], text)
                    checked += 1
    assert checked > len(_rules())
    assert f"absent(up{{{job}}})" in " ".join(r["expr"] for r in _rules())


def test_the_current_value_is_the_quality_rules_actual_or_else_the_source_series():
    """The annotations read the current value from series Prometheus has for every server."""
    quality = yaml.safe_load((RULES.parent / "linborg.quality.rules.yml").read_text())
    records = [r for g in quality["groups"] for r in g["rules"] if "record" in r]
    actual = [r for r in records if r["record"] == quality_rules.ACTUAL]
    assert {r["labels"]["metric"] for r in actual} == set(METRIC_NAMES)
    assert all(r["expr"].startswith("max by (server) (") for r in actual)
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    assert "rules/linborg.quality.rules.yml" in prometheus["rule_files"]
    # The fallback is the default source series, the contract's wire name.
    assert CONFIG["actuals"] == {m.name: m.wire_name for m in METRICS}
    query = (
        f"max({quality_rules.ACTUAL}{{server='%s',metric='%s'}}) or max(linborg_%s{{server='%s'}})"
    )
    assert query == alert_rules.CURRENT_VALUE_QUERY
    call = f'printf "{query}" $labels.server $labels.metric $labels.metric $labels.server | query'
    for rule in _rules():
        if _is_predicted(rule):
            for key in ("summary", "description", "current_value", "lead_time"):
                assert call in rule["annotations"][key], (rule["alert"], key)


def test_the_annotations_read_thresholds_from_the_exporters_linborg_threshold():
    """Thresholds on the wire: no threshold value is compiled into the rules.

    Every predicted text compares the current value with linborg_threshold of the alert's own
    exporter (instance), profile and metric, so the exporter's thresholds_file moves them.
    """
    query = alert_rules.THRESHOLD_QUERY
    assert query == (
        f"{F.THRESHOLD}{{job='linborg-exporter', instance='%s', profile='%s', metric='%s'}}"
    )
    assert alert_rules.THRESHOLD_ARGS == "$labels.instance $labels.profile $labels.metric"
    both = f'range printf "{query}" {alert_rules.THRESHOLD_ARGS} | query'
    predicted = [rule for rule in _rules() if _is_predicted(rule)]
    assert predicted
    for rule in predicted:
        notes = rule["annotations"]
        for key in ("summary", "description", "lead_time"):
            assert both in notes[key], (rule["alert"], key)
        summary = notes["summary"]
        assert "{{ if $pastCrit }}" in summary and "{{ else if $pastWarn }}" in summary
        assert "current value unknown" in summary, "it renders without the current value too"
        assert "reaches warning" not in summary and "reaches critical" not in summary
        # The threshold annotation asks for the alert's own level only.
        level = rule["labels"]["severity"]
        one = query.replace("metric='%s'", f"metric='%s', level='{level}'")
        assert f'printf "{one}" {alert_rules.THRESHOLD_ARGS} | query' in notes["threshold"]
        # Nothing picks a value by profile in the template any more.
        text = " ".join(notes.values())
        assert "eq $labels.profile" not in text and '$" $labels.profile' not in text, rule["alert"]
        assert not re.search(r"\$(warn|crit) = [0-9]", text), rule["alert"]


def test_the_rules_do_not_depend_on_threshold_files():
    assert "thresholds_files" not in CONFIG
    with pytest.raises(KeyError, match="thresholds_files"):
        alert_rules.render({"thresholds_files": ("my-thresholds.yaml",)})


def test_a_promtool_case_proves_an_overridden_threshold_moves_the_alert():
    """A unit test feeds linborg_threshold that changes (an operator's thresholds_file) and
    expects the threshold annotation on both sides of the change."""
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    (group,) = [g for g in doc["tests"] if "overridden linborg_threshold" in g["name"]]
    changing = [
        s["values"]
        for s in group["input_series"]
        if s["series"].startswith(F.THRESHOLD + "{") and len(set(s["values"].split())) > 1
    ]
    assert changing, "no linborg_threshold series changes value in the override case"
    said = {
        (case["eval_time"], a["exp_labels"]["server"]): a["exp_annotations"]["threshold"]
        for case in group["alert_rule_test"]
        for a in case.get("exp_alerts") or []
    }
    assert said[("29m", "ppdb001")] == "30%" and said[("30m", "ppdb001")] == "25%"
    assert said[("30m", "ppdb002")] == "30%", "another exporter's thresholds do not move"


def test_every_metric_name_in_the_rules_is_a_contract_metric():
    for rule in _rules():
        text = rule["expr"] + " ".join(rule["annotations"].values())
        for values in re.findall(r'\b(?:metric|driver)(?:=|=~|!~)"([^"]*)"', text):
            for name in values.split("|"):
                assert name in METRIC_NAMES, f"{rule['alert']}: unknown metric {name!r}"
        for name in re.findall(r'\$labels\.metric "([^"]+)"', text):
            assert name in METRIC_NAMES, f"{rule['alert']}: unknown metric {name!r}"
        for names in re.findall(r'match "\^\(([^)]*)\)\$" \$labels\.metric', text):
            assert set(names.split("|")) <= set(METRIC_NAMES), rule["alert"]
        for names in re.findall(r'match "\^\(([^)]*)\)\$" \$labels\.profile', text):
            assert set(names.split("|")) <= set(PROFILE_NAMES), rule["alert"]


# --- knobs --------------------------------------------------------------------------------------


def test_config_lead_times_and_risk_thresholds_are_consistent():
    cfg = CONFIG
    crit = parse_duration(cfg["critical_lead_time"])
    warn = parse_duration(cfg["warning_lead_time"])
    assert crit <= warn <= 8 * 3600, "the exporter predicts breaches up to 8h ahead"
    assert cfg["risk_warning"] <= cfg["risk_critical"], "critical must imply warning"
    assert cfg["critical_quantile"] == "0.5" and cfg["warning_quantile"] == "pessimistic"
    assert tuple(cfg["horizons"]) == DEFAULT_HORIZONS, "the horizons the exporter exposes"


def test_a_p50_critical_breach_within_the_lead_time_always_clears_the_critical_risk():
    """The risk threshold never vetoes what the time to breach already says (linborg/risk.py)."""
    cfg = CONFIG
    lead_steps = parse_duration(cfg["critical_lead_time"]) // 300
    thresholds = load_thresholds()
    name = METRICS[0].name
    limit = thresholds.get("generic", name).critical
    # The weakest case: p50 touches the critical threshold at the last step of the lead time
    # only, with a wide spread.
    fc = np.zeros((1, len(METRICS), 96, 3))
    fc[0, 0, :, :] = [limit - 40, limit - 30, limit - 20]
    fc[0, 0, lead_steps - 1, :] = [limit - 10, limit, limit + 10]
    present = np.zeros((1, len(METRICS)), bool)
    present[0, 0] = True
    result = assess(fc, ["generic"], [m.name for m in METRICS], thresholds, present=present)
    assert result.time_to_breach[0, 0, 1, 0] == lead_steps * 300
    assert result.score[0] >= cfg["risk_critical"], result.score[0]


def test_unknown_settings_and_malformed_selectors_are_refused():
    with pytest.raises(KeyError, match="for_critcal"):
        alert_rules.render({"for_critcal": "5m"})
    for selector in ("linborg-exporter", "job='x'", 'job="a\\"b"', ""):
        with pytest.raises(ValueError, match="exporter_selector"):
            alert_rules.render({"exporter_selector": selector})


def test_settings_reach_the_rules():
    text = alert_rules.render(
        {
            "exporter_selector": 'job="forecasts"',
            "runbook_base_url": "https://wiki.example/runbooks.md",
            "grafana_url": "https://grafana.example",
            "for_critical": "20m",
        }
    )
    rules = " ".join(r["expr"] + " ".join(r["annotations"].values()) for r in _rules(text))
    assert 'job="linborg-exporter"' not in rules and "job='linborg-exporter'" not in rules
    assert 'job="forecasts"' in rules and "job='forecasts'" in rules  # annotations' queries too
    assert "https://wiki.example/runbooks.md#linborgpredictedincident" in text
    assert "https://grafana.example/d/linborg-server?var-server=" in text
    assert "for: 20m" in text


def test_prometheus_readme_lists_every_alert():
    readme = (ROOT / "prometheus" / "README.md").read_text()
    for name in _alertnames():
        assert f"| {name} |" in readme, f"prometheus/README.md does not list {name}"
