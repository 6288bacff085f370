"""The generated dashboards and forecast-quality rules: current, consistent and valid."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import output_of_fresh_python
from realstack import require

from linborg import families as F
from linborg.app.cli import main
from linborg.contract import METRIC_NAMES, METRICS
from linborg.exporter.config import DEFAULT_HORIZONS
from linborg.mixin import CONFIG, alert_rules, dashboards, quality_rules
from linborg.mixin.dashboards.panels import Kit
from linborg.thresholds import LEVELS

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "grafana" / "dashboards"
RULES_DIR = ROOT / "prometheus" / "rules"
QUALITY_RULES = RULES_DIR / "linborg.quality.rules.yml"
QUALITY_TESTS = ROOT / "prometheus" / "tests" / "quality_rules_test.yml"
GOLDEN = ROOT / "tests" / "golden" / "metrics.txt"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
README = ROOT / "grafana" / "README.md"
ALERTMANAGER = ROOT / "alertmanager" / "alertmanager.yml"
DASHBOARD_UIDS = CONFIG["dashboard_uids"]

#: A series name in PromQL (recording rule names have colons).
NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _docs() -> dict[str, dict]:
    return {name: json.loads(text) for name, text in dashboards.render_all().items()}


def _panels(doc: dict) -> list[dict]:
    return list(dashboards.iter_panels(doc["panels"]))


def _rules(texts: list[str] | None = None) -> list[dict]:
    out = []
    for text in texts or [path.read_text() for path in sorted(RULES_DIR.glob("*.yml"))]:
        for group in yaml.safe_load(text)["groups"]:
            out += group["rules"]
    return out


def _allowed_names() -> set[str]:
    """Return every series name a dashboard or rule may read."""
    names = {F.FORECAST_PATH}
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.match(r"[^{ ]+", line).group(0))
    names |= {m.wire_name for m in METRICS}
    names |= {rule["record"] for rule in _rules() if "record" in rule}
    return names


def _linborg_names(expr: str) -> set[str]:
    return {name for name in NAME.findall(expr) if "linborg_" in name}


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def _github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


# --- generated ---------------------------------------------------------------------------------


def test_dashboards_regenerate_into_an_empty_folder_identically(tmp_path, capsys):
    out = tmp_path / "dashboards"
    assert main(["dashboards", "--out", str(out)]) == 0
    generated = sorted(p.name for p in out.iterdir())
    assert generated == sorted(f"{uid}.json" for uid in DASHBOARD_UIDS.values())
    assert sorted(p.name for p in COMMITTED.iterdir()) == generated, (
        "grafana/dashboards/ holds files `linborg dashboards` does not write (stale or hand-made)"
    )
    for name in generated:
        assert (out / name).read_bytes() == (COMMITTED / name).read_bytes(), (
            f"grafana/dashboards/{name} is stale: run `linborg dashboards` and commit"
        )
    assert str(out / "linborg-server.json") in capsys.readouterr().out


def test_render_is_deterministic():
    code = (
        "import json, sys; from linborg.mixin import dashboards; "
        "sys.stdout.write(json.dumps(dashboards.render_all()))"
    )
    first = output_of_fresh_python(code, hash_seed=1)
    assert first == output_of_fresh_python(code, hash_seed=2)
    assert json.loads(first) == dashboards.render_all()


# --- structure ---------------------------------------------------------------------------------


def test_every_dashboard_uid_tag_and_datasource_variable():
    docs = _docs()
    assert sorted(doc["uid"] for doc in docs.values()) == sorted(DASHBOARD_UIDS.values())
    for name, doc in docs.items():
        assert name == f"{doc['uid']}.json"
        assert "linborg" in doc["tags"]
        var = doc["templating"]["list"][0]
        assert (var["name"], var["type"]) == ("datasource", "datasource")
        assert var["query"] == "prometheus"
        assert var["current"]["value"] == CONFIG["prometheus_datasource_uid"]


def test_panel_ids_are_unique_and_panels_fit_the_grid_without_overlap():
    for doc in _docs().values():
        panels = _panels(doc)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{doc['uid']}: duplicate panel ids"
        cells = set()
        for p in panels:
            pos = p["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (doc["uid"], p["title"])
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{doc['uid']}: {p['title']} overlaps"
                    cells.add((x, y))


def test_every_panel_has_a_datasource_and_only_the_fans_use_the_forecast_api():
    var = f"${{{CONFIG['datasource_variable']}}}"
    forecasts_uid = CONFIG["forecasts_datasource_uid"]
    fans = 0
    for doc in _docs().values():
        for p in _panels(doc):
            assert p["datasource"], f"{doc['uid']}: {p['title']} has no datasource"
            uid = p["datasource"]["uid"]
            assert uid in (var, forecasts_uid), (doc["uid"], p["title"], uid)
            for t in p.get("targets", []):
                assert t["datasource"] == p["datasource"], (doc["uid"], p["title"])
                assert t["expr"].strip(), (doc["uid"], p["title"])
                forecast_path = F.FORECAST_PATH in t["expr"]
                assert forecast_path == (uid == forecasts_uid), (doc["uid"], t["expr"])
                if forecast_path:
                    # The forecast path API answers plain selectors only.
                    assert re.fullmatch(r"linborg_forecast_path\{[^{}()]*\}", t["expr"])
            fans += uid == forecasts_uid
    assert fans == len(METRICS), "one forecast fan per metric on the server dashboard"


def test_every_linborg_series_used_exists():
    allowed = _allowed_names()
    used: dict[str, str] = {}
    for metric in METRIC_NAMES:
        for uid, title, _, expr in dashboards.panel_queries({"metric": metric}):
            for name in _linborg_names(expr):
                used.setdefault(name, f"{uid}: {title}")
    for doc in _docs().values():
        for var in doc["templating"]["list"]:
            if var["type"] == "query":
                for name in _linborg_names(var["query"]):
                    used.setdefault(name, f"{doc['uid']}: variable {var['name']}")
    for rule in _rules():
        text = rule["expr"] + " ".join(rule.get("annotations", {}).values())
        # Annotations build the source series' name with printf: linborg_%s is every metric.
        text = text.replace("linborg_%s", " ".join(f"linborg_{m}" for m in METRIC_NAMES))
        for name in _linborg_names(text):
            used.setdefault(name, f"rule {rule.get('alert') or rule.get('record')}")
    unknown = {name: where for name, where in used.items() if name not in allowed}
    assert not unknown, f"series that nothing exposes or records: {unknown}"
    # The check bites: the quality records and the fan are used and known.
    assert quality_rules.mae_record() in used
    assert F.FORECAST_PATH in used


def test_every_exporter_series_selected_carries_the_job_selector():
    job = CONFIG["exporter_selector"]
    exprs = [expr for *_, expr in dashboards.panel_queries()]
    for doc in _docs().values():
        exprs += [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    checked = 0
    for expr in exprs:
        for name in F.ON_METRICS:
            for found in re.finditer(rf"\b{name}\b(\{{[^}}]*\}})?", expr):
                assert job in (found.group(1) or ""), expr
                checked += 1
    assert checked > 50
    # ... and `up` of the exporter's job, on the exporter dashboard.
    assert any(f"up{{{job}}}" in expr for expr in exprs)


def test_metric_horizon_and_quantile_labels_are_known_values():
    for metric in METRIC_NAMES:
        for uid, title, _, expr in dashboards.panel_queries({"metric": metric}):
            for value in re.findall(r'\bmetric="([^"]*)"', expr):
                assert value in METRIC_NAMES, (uid, title, value)
            for value in re.findall(r'\bhorizon="([^"]*)"', expr):
                assert value in CONFIG["horizons"], (uid, title, value)
            for value in re.findall(r'\bq="([^"]*)"', expr):
                assert value in ("0.1", "0.5", "0.9", "pessimistic"), (uid, title, value)


def test_panel_queries_fill_in_every_variable():
    queries = dashboards.panel_queries({"server": "ppdb001"})
    assert queries
    for uid, title, ds, expr in queries:
        assert ds in (CONFIG["prometheus_datasource_uid"], CONFIG["forecasts_datasource_uid"])
        assert "$" not in expr and "$" not in title, (uid, title, expr)
    server = [q for q in queries if q[0] == DASHBOARD_UIDS["server"]]
    assert any('server="ppdb001"' in expr for *_, expr in server)
    assert any("offset 1h" in expr for *_, expr in server)


def test_fleet_shows_cpu_used_never_raw_idle():
    cpu = [
        expr
        for uid, _, _, expr in dashboards.panel_queries()
        if uid == DASHBOARD_UIDS["fleet"] and "linborg_cpu_idle_pct" in expr
    ]
    assert cpu
    assert all(expr.startswith("100 - ") for expr in cpu), cpu


def test_threshold_lines_are_the_exporters_linborg_threshold_for_the_servers_profile():
    """Thresholds on the wire: no value is compiled in, the lines follow the exporter's config."""
    kit = Kit(CONFIG)
    for metric in METRIC_NAMES:
        expr = kit.threshold_expr(metric)
        assert expr == (
            f'{F.THRESHOLD}{{job="linborg-exporter", metric="{metric}"}}\n'
            "and on (instance, profile)\n"
            f'  {F.DATA_COMPLETENESS_RATIO}{{job="linborg-exporter", server="$server"}}'
        )
        assert kit.threshold_targets(metric) == [(expr, "{{level}}")]
    # No dashboard carries a threshold value: no vector(<number>) chains, nothing per profile.
    for doc in _docs().values():
        for p in _panels(doc):
            for t in p.get("targets", []):
                assert not re.search(r"vector\([0-9.]+\)\s+and", t["expr"]), (doc["uid"], t)
                assert not re.search(r'profile=~"[a-z_]+\|', t["expr"]), (doc["uid"], p["title"])
    # The I/O wait panel and every metric's panel of the server dashboard draw them, one series
    # per level named after it, which the dashed-line overrides match.
    doc = _docs()["linborg-server.json"]
    drawn = [p for p in _panels(doc) if any(F.THRESHOLD in t["expr"] for t in p.get("targets", []))]
    assert len(drawn) == len(METRICS) + 1
    iowait = next(p for p in doc["panels"] if p["title"].startswith("I/O wait"))
    legends = {t["legendFormat"] for t in iowait["targets"]}
    assert {"actual", "{{level}}"} <= legends
    styled = {o["matcher"]["options"] for o in iowait["fieldConfig"]["overrides"]}
    assert set(LEVELS) <= styled


def test_server_dashboard_variables_and_time_range_cover_the_fan():
    doc = _docs()["linborg-server.json"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["server"]["query"] == (
        'label_values(linborg_risk_score{job="linborg-exporter"}, server)'
    )
    assert [o["value"] for o in variables["horizon"]["options"]] == list(DEFAULT_HORIZONS)
    assert doc["time"] == {"from": "now-6h", "to": "now+8h"}


def test_every_dashboard_url_of_the_alerts_exists():
    docs = {doc["uid"]: doc for doc in _docs().values()}
    seen = set()
    for rule in _rules([alert_rules.render({"grafana_url": "https://grafana.example"})]):
        url = rule.get("annotations", {}).get("dashboard_url")
        if not url:
            continue
        uid = re.search(r"/d/([^?#/]+)", url).group(1)
        assert uid in docs, f"{rule['alert']} links to missing dashboard {uid}"
        seen.add(uid)
        names = {v["name"] for v in docs[uid]["templating"]["list"]}
        for var in re.findall(r"var-(\w+)=", url):
            assert var in names, f"{rule['alert']}: {uid} has no variable {var}"
    assert seen == {DASHBOARD_UIDS["server"], DASHBOARD_UIDS["exporter"]}


def test_impact_dashboard_cost_routing_and_runbooks():
    doc = _docs()["linborg-impact.json"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["cost_per_incident"]["current"]["value"] == "50000"
    exprs = [t["expr"] for p in _panels(doc) for t in p.get("targets", [])]
    assert any("$cost_per_incident" in e for e in exprs)
    texts = " ".join(p["options"]["content"] for p in _panels(doc) if p["type"] == "text")
    receivers = [r["name"] for r in yaml.safe_load(ALERTMANAGER.read_text())["receivers"]]
    for receiver in receivers:
        assert f"`{receiver}`" in texts, f"routing matrix misses {receiver}"
    anchors = {
        _github_anchor(line[3:]) for line in RUNBOOKS.read_text().splitlines() if line[:3] == "## "
    }
    links = re.findall(r"runbooks\.md#([\w-]+)`", texts)
    assert links
    for anchor in links:
        assert anchor in anchors, f"runbook link to missing #{anchor}"
    for fam in alert_rules.FAMILIES:
        assert f"{fam.alertname} (`docs/runbooks.md#{fam.alertname.lower()}`)" in texts
    # The thresholds per profile come from the exporters, both levels, in one table.
    (table,) = [p for p in _panels(doc) if p["title"] == "Thresholds in use, per profile"]
    exprs = {t["legendFormat"]: t["expr"] for t in table["targets"]}
    assert exprs == {
        level: f'max by (profile, metric) ({F.THRESHOLD}{{job="linborg-exporter", '
        f'level="{level}"}})'
        for level in LEVELS
    }
    assert all(t["instant"] and t["format"] == "table" for t in table["targets"])


def test_runbooks_are_links_where_the_base_is_a_url():
    base = "https://wiki.example/linborg/runbooks.md"
    doc = json.loads(dashboards.render_all({"runbook_base_url": base})["linborg-impact.json"])
    texts = " ".join(p["options"]["content"] for p in _panels(doc) if p["type"] == "text")
    assert f"[LinborgDiskFullPredicted]({base}#linborgdiskfullpredicted)" in texts
    assert "docs/runbooks.md" not in texts


def test_readme_describes_every_dashboard_and_the_command():
    text = README.read_text()
    for uid in DASHBOARD_UIDS.values():
        assert f"`{uid}`" in text, f"grafana/README.md does not describe {uid}"
    assert "linborg dashboards" in text


# --- forecast-quality rules ---------------------------------------------------------------------


def test_quality_rules_pass_promtool_check():
    out = _promtool("check", "rules", str(QUALITY_RULES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_quality_rules_pass_their_promtool_unit_tests():
    out = _promtool("test", "rules", str(QUALITY_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_quality_unit_tests_load_the_committed_file_and_check_every_record():
    doc = yaml.safe_load(QUALITY_TESTS.read_text())
    assert doc["rule_files"] == ["../rules/linborg.quality.rules.yml"]
    exprs = " ".join(t["expr"] for test in doc["tests"] for t in test["promql_expr_test"])
    for record in (
        quality_rules.ABS_ERROR,
        quality_rules.IN_BAND,
        quality_rules.mae_record(),
        quality_rules.coverage_record(),
    ):
        assert record in exprs, f"no unit test reads {record}"


def test_quality_rules_cover_every_metric_and_horizon():
    rules = [r for g in quality_rules.rule_groups()["groups"] for r in g["rules"]]
    actuals = [r["labels"]["metric"] for r in rules if r["record"] == quality_rules.ACTUAL]
    assert actuals == list(METRIC_NAMES)
    for record in (quality_rules.ABS_ERROR, quality_rules.IN_BAND):
        horizons = [r["labels"]["horizon"] for r in rules if r["record"] == record]
        assert horizons == list(DEFAULT_HORIZONS)
        for r in rules:
            if r["record"] == record:
                h = r["labels"]["horizon"]
                assert f'horizon="{h}"' in r["expr"] and f"offset {h}" in r["expr"]


def test_quality_settings_are_checked_and_reach_the_rules():
    with pytest.raises(KeyError, match="unknown mixin settings: windw"):
        quality_rules.render({"windw": "2h"})
    with pytest.raises(KeyError, match="mem_used_pct"):
        quality_rules.render({"actuals": {"cpu_user_pct": "linborg_cpu_user_pct"}})
    text = quality_rules.render(
        {
            "quality_window": "2h",
            "actuals": {
                **CONFIG["actuals"],
                "cpu_user_pct": "instance:linborg_cpu_user_pct:rate5m",
            },
        }
    )
    assert "profile_metric_horizon:linborg_forecast_coverage:avg_2h" in text
    assert "[2h]" in text
    assert "max by (server) (instance:linborg_cpu_user_pct:rate5m)" in text
