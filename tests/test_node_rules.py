"""Recording rules deriving the LINBORG series from node_exporter: promtool and the real thing."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from realstack import Process, free_port, poll, require, start_prometheus

from linborg.contract import METRIC_NAMES, METRICS, METRICS_BY_NAME, ContractError
from linborg.exporter.config import load_config
from linborg.mixin import CONFIG, node_rules
from linborg.mixin.rulefiles import HEADER

ROOT = Path(__file__).resolve().parents[1]
RULE_FILE = ROOT / "prometheus" / "rules" / "node_exporter.rules.yml"
UNIT_TESTS = ROOT / "prometheus" / "tests" / "node_exporter_rules_test.yml"


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_render_is_one_group_in_contract_order_and_deterministic():
    text = node_rules.render()
    assert text == node_rules.render()
    doc = yaml.safe_load(text)
    [group] = doc["groups"]
    assert group["name"] == CONFIG["node_group"] and "interval" not in group
    names = [r["record"] for r in group["rules"]]
    order = [m.wire_name for m in METRICS]
    wires = [n.split(":")[1] for n in names]
    assert wires == sorted(wires, key=order.index) and len(set(names)) == len(names)
    for rule in group["rules"]:
        assert set(rule) == {"record", "expr"}
        assert '"server", "$1", "instance"' in rule["expr"]
        assert "profile" not in rule["expr"]


def test_every_metric_is_recorded_except_the_close_wait_without_a_source():
    recorded = node_rules.records()
    unrecorded = set(METRIC_NAMES) - set(recorded)
    assert unrecorded == {"back_close_wait"} and set(recorded) <= set(METRIC_NAMES)
    assert "front_close_wait" in CONFIG["node_close_wait_metrics"]
    for name, record in recorded.items():
        level, wire, operations = record.split(":")
        assert level == "instance" and wire == f"linborg_{name}" and operations


def test_the_committed_rule_file_is_what_render_writes():
    expected = HEADER.format(module="linborg/mixin/node_rules") + node_rules.render()
    assert RULE_FILE.read_text() == expected, "stale: run `linborg rules`"


def test_promtool_accepts_the_rendered_and_the_committed_rules(tmp_path):
    rendered = tmp_path / "node_exporter.rules.yml"
    rendered.write_text(node_rules.render())
    for path in (rendered, RULE_FILE):
        result = promtool("check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(node_rules.rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", str(UNIT_TESTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_knobs_change_the_rules(tmp_path):
    knobs = {
        "node_disk_mountpoint": "/data",
        "node_rate_window": "2m",
        "node_close_wait_metrics": ("front_close_wait", "back_close_wait"),
        "node_exporter_selector": 'job="node"',
        "process_exporter_selector": 'job="process"',
    }
    exprs = {r["record"]: r["expr"] for r in node_rules.rules(knobs)}
    assert 'mountpoint="/data"' in exprs["instance:linborg_disk_usage_pct:ratio"]
    assert "[2m]" in exprs["instance:linborg_cpu_user_pct:rate2m"]
    assert "instance:linborg_net_in_mb_s:sum_rate2m" in exprs
    assert set(node_rules.records(knobs)) == set(METRIC_NAMES)
    # Every node_exporter series carries the selector, every process-exporter one its own.
    for expr in exprs.values():
        for name in re.findall(r"\b(node_[a-zA-Z_]+)\b(\{[^}]*\})?", expr):
            assert name[1].startswith('{job="node"'), (name, expr)
    assert 'namedprocess_namegroup_cpu_seconds_total{job="process", ' in "".join(exprs.values())
    path = tmp_path / "variant.yml"
    path.write_text(node_rules.render(knobs))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_knob_naming_no_contract_metric_is_refused():
    with pytest.raises(ContractError, match="unknown metric 'close_wait'"):
        node_rules.render({"node_close_wait_metrics": ("close_wait",)})


def test_the_node_exporter_config_reads_the_recorded_series():
    cfg = load_config(ROOT / "exporter" / "node_exporter.yml")
    assert cfg.queries == node_rules.records()
    assert (cfg.server_label, cfg.profile_label) == ("server", "profile")
    assert cfg.query("back_close_wait") == "linborg_back_close_wait"


def test_the_docs_name_every_record_and_knob():
    doc = (ROOT / "docs" / "node-exporter.md").read_text()
    for record in node_rules.records().values():
        assert f"`{record}`" in doc, record
    for knob in CONFIG:
        if knob.startswith("node_") or knob == "process_exporter_selector":
            assert f"`{knob}`" in doc, knob
    assert "--collector.tcpstat" in doc


# --- a real node_exporter scraped by a real Prometheus that evaluates the committed rules -------

COLLECTORS = ("cpu", "meminfo", "filesystem", "netdev", "loadavg", "stat", "tcpstat")


@pytest.fixture
def node_exporter(tmp_path):
    port = free_port()
    proc = Process(
        [
            require("prometheus-node-exporter"),
            "--collector.disable-defaults",
            *(f"--collector.{c}" for c in COLLECTORS),
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "node_exporter.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready():
            if proc.proc.poll() is not None:
                raise AssertionError("node_exporter exited:\n" + proc.output())
            return requests.get(url + "/metrics", timeout=2).status_code == 200

        poll(ready, 20, "node_exporter to serve /metrics")
        yield port
    finally:
        proc.stop()


@pytest.fixture
def prometheus(tmp_path, node_exporter):
    config = f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{RULE_FILE}"]
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{node_exporter}"]}}]
"""
    proc, url = start_prometheus(tmp_path, config)
    try:
        yield url, node_exporter
    finally:
        proc.stop()


def instant(url: str, query: str, at: float) -> list[dict]:
    resp = requests.get(url + "/api/v1/query", params={"query": query, "time": at}, timeout=5)
    resp.raise_for_status()
    return resp.json()["data"]["result"]


@pytest.mark.integration
def test_real_node_exporter_series_become_sane_linborg_series(prometheus):
    url, port = prometheus
    recorded = node_rules.records()
    cpu = [recorded[m] for m in CONFIG["node_cpu_modes"]]
    disk_source = (
        f'node_filesystem_size_bytes{{mountpoint="{CONFIG["node_disk_mountpoint"]}", '
        f'fstype!~"{CONFIG["node_disk_fstype_exclude"]}"}}'
    )

    def derived():
        at = time.time()
        if not instant(url, "up", at):
            return None
        has_disk = bool(instant(url, disk_source, at))
        # No process-exporter here, so no java_cpu_pct.
        expected = set(recorded.values()) - {recorded["java_cpu_pct"]}
        if not has_disk:
            expected.discard(recorded["disk_usage_pct"])
        got = {}
        for s in instant(url, '{__name__=~"instance:linborg_.+"}', at):
            got[s["metric"]["__name__"]] = (s["metric"], s["value"])
        # The CPU parts must come from one evaluation to add up (rules are written in turn).
        if not expected <= set(got) or len({got[n][1][0] for n in cpu}) != 1:
            return None
        return got, has_disk

    got, has_disk = poll(derived, 25, "the recorded LINBORG series", interval=0.5)
    value = {name: float(v) for name, (_, (_, v)) in got.items()}
    for name, (labels, _) in got.items():
        assert labels["server"] == "127.0.0.1", name
        assert labels["instance"] == f"127.0.0.1:{port}" and labels["job"] == "node", name
        assert "profile" not in labels, name
    for metric, record in recorded.items():
        if record in value and METRICS_BY_NAME[metric].unit == "percent":
            assert 0 <= value[record] <= 100, (record, value[record])
    # The four CPU parts cover every mode, so they add up to 100.
    assert sum(value[n] for n in cpu) == pytest.approx(100, abs=1e-6)
    assert 0 < value[recorded["mem_used_pct"]] < 100
    assert value[recorded["uptime_days"]] > 0
    assert value[recorded["load_average"]] >= 0
    assert value[recorded["front_close_wait"]] >= 0
    assert value[recorded["net_in_mb_s"]] >= 0 and value[recorded["net_out_mb_s"]] >= 0
    # Without process-exporter java_cpu_pct is absent, not 0.
    assert recorded["java_cpu_pct"] not in got
    # The data disk is recorded exactly when node_exporter reports it with a kept fstype.
    assert (recorded["disk_usage_pct"] in got) == has_disk
