"""The LINBORG contract: metric names, deprecated names, profiles, states, ids and versions."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import pytest

import linborg
from linborg import contract
from linborg.contract import (
    CONTRACT_VERSION,
    DEFAULT_HOSTNAME_PATTERNS,
    DEPRECATED_NAMES,
    METRIC_NAMES,
    METRICS,
    PROFILE_NAMES,
    STATES,
    ContractError,
    ProfileMatcher,
    check_contract_version,
    infer_profile,
    metric,
    server_hash,
    server_id,
    shard_of,
)

EXPECTED_METRICS = (
    "cpu_user_pct",
    "cpu_sys_pct",
    "cpu_iowait_pct",
    "cpu_idle_pct",
    "java_cpu_pct",
    "mem_used_pct",
    "swap_used_pct",
    "disk_usage_pct",
    "net_in_mb_s",
    "net_out_mb_s",
    "back_close_wait",
    "front_close_wait",
    "load_average",
    "uptime_days",
)

EXPECTED_PROFILES = (
    "ml_compute",
    "database",
    "web_api",
    "conductor_mgmt",
    "data_ingest",
    "risk_analytics",
    "generic",
)

EXPECTED_STATES = {
    "critical_issue",
    "healthy",
    "heavy_load",
    "idle",
    "maintenance",
    "morning_spike",
    "offline",
    "recovery",
}

# --- metrics --------------------------------------------------------------------------------


def test_the_14_metric_names_in_contract_order():
    assert METRIC_NAMES == EXPECTED_METRICS
    assert tuple(m.name for m in METRICS) == EXPECTED_METRICS
    assert linborg.METRIC_NAMES == EXPECTED_METRICS


@pytest.mark.parametrize("m", METRICS, ids=lambda m: m.name)
def test_each_metric_has_unit_range_direction_and_help(m):
    assert m.unit.strip()
    assert m.min < m.max
    assert m.direction in ("above", "below")
    assert len(m.help.strip()) > 10
    assert m.wire_name == f"linborg_{m.name}"
    assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", m.wire_name)  # a valid Prometheus name


def test_percent_metrics_range_0_to_100_and_only_idle_is_lower_is_worse():
    for m in METRICS:
        if m.name.endswith("_pct"):
            assert (m.unit, m.min, m.max) == ("percent", 0, 100)
    assert [m.name for m in METRICS if m.direction == "below"] == ["cpu_idle_pct"]


def test_metric_returns_the_contract_entry():
    assert metric("mem_used_pct") is METRICS[EXPECTED_METRICS.index("mem_used_pct")]
    assert metric("cpu_idle_pct").direction == "below"


REPLACEMENTS = {
    "cpu_pct": "cpu_idle_pct",
    "cpu_percent": "cpu_idle_pct",
    "mem_pct": "use mem_used_pct",
    "memory_percent": "use mem_used_pct",
    "disk_percent": "use disk_usage_pct",
    "status": "use state",
    "disk_io_mb_s": "no LINBORG replacement",
    "latency_ms": "no LINBORG replacement",
}


def test_the_deprecated_names_are_exactly_the_8_old_names():
    assert set(DEPRECATED_NAMES) == set(REPLACEMENTS)
    assert not set(DEPRECATED_NAMES) & set(METRIC_NAMES)


@pytest.mark.parametrize("old", sorted(REPLACEMENTS))
def test_metric_rejects_deprecated_name_naming_the_replacement(old):
    with pytest.raises(ContractError) as err:
        metric(old)
    text = str(err.value)
    assert f"'{old}'" in text
    assert "deprecated" in text
    assert REPLACEMENTS[old] in text


def test_cpu_pct_message_names_the_split_cpu_metrics():
    text = str(pytest.raises(ContractError, metric, "cpu_pct").value)
    for part in ("cpu_user_pct", "cpu_sys_pct", "cpu_iowait_pct", "100 - cpu_idle_pct"):
        assert part in text


def test_unknown_metric_message_lists_every_valid_name():
    with pytest.raises(ContractError, match="unknown metric 'cpu_temp'") as err:
        metric("cpu_temp")
    for name in EXPECTED_METRICS:
        assert name in str(err.value)


def test_contract_error_is_a_value_error():
    assert issubclass(ContractError, ValueError)
    assert linborg.ContractError is ContractError


# --- profiles -------------------------------------------------------------------------------


def test_the_7_profiles_in_order():
    assert PROFILE_NAMES == EXPECTED_PROFILES
    assert [name for _, name in DEFAULT_HOSTNAME_PATTERNS] == list(EXPECTED_PROFILES)


CONVENTIONS = {
    "ml_compute": ("ppml", 4),
    "database": ("ppdb", 3),
    "web_api": ("ppweb", 3),
    "conductor_mgmt": ("ppcon", 2),
    "data_ingest": ("ppetl", 3),
    "risk_analytics": ("pprisk", 3),
    "generic": ("ppgen", 3),
}


@pytest.mark.parametrize("name", EXPECTED_PROFILES)
def test_conventional_hostname_infers_its_profile(name):
    prefix, digits = CONVENTIONS[name]
    for host in (prefix + "0" * digits, prefix + "9" * digits, prefix + "1".rjust(digits, "0")):
        found = infer_profile(host)
        assert found.profile == name, host
        assert found.matched is True
        assert "matches" in found.reason


@pytest.mark.parametrize("name", EXPECTED_PROFILES)
def test_wrong_digit_count_does_not_match(name):
    prefix, digits = CONVENTIONS[name]
    for host in (prefix + "1" * (digits - 1), prefix + "1" * (digits + 1), prefix):
        found = infer_profile(host)
        assert found.matched is False, host
        assert found.profile == "generic"


@pytest.mark.parametrize(
    "host, expected",
    [
        ("ppdb001.prod.example.com", "database"),
        ("ppml0042.example.com", "ml_compute"),
        ("ppweb003:9100", "web_api"),
        ("ppcon07.dc1:9100", "conductor_mgmt"),
        ("pprisk010.example.com:9100", "risk_analytics"),
    ],
)
def test_fqdn_and_port_suffix_still_match(host, expected):
    found = infer_profile(host)
    assert (found.profile, found.matched) == (expected, True)


@pytest.mark.parametrize("host", ["foo", "ppdb001x", "xppdb001", "web01", "ppml12345", ""])
def test_unknown_hostname_falls_back_to_generic_and_says_so(host):
    found = infer_profile(host)
    assert found.profile == "generic"
    assert found.matched is False
    assert "fell back to 'generic'" in found.reason
    assert f"'{host}'" in found.reason


def test_profile_hostname_follows_the_convention():
    assert contract.profile("ml_compute").hostname(7) == "ppml0007"
    assert contract.profile("conductor_mgmt").hostname(42) == "ppcon42"
    with pytest.raises(ContractError, match="does not fit the 2-digit"):
        contract.profile("conductor_mgmt").hostname(100)
    with pytest.raises(ContractError, match="unknown profile 'gpu'"):
        contract.profile("gpu")


def test_custom_patterns_take_effect():
    matcher = ProfileMatcher([(r"^db-", "database"), (r"^gpu\d+$", "ml_compute")])
    assert matcher.match("db-eu-1").profile == "database"
    assert matcher.match("gpu12").profile == "ml_compute"
    # The defaults are replaced, not extended.
    assert matcher.match("ppweb001") == (
        "generic",
        False,
        "hostname 'ppweb001' matches no pattern; fell back to 'generic'",
    )
    assert infer_profile("db-eu-1", [(r"^db-", "database")]).matched is True


def test_custom_patterns_are_tried_in_order():
    first_db = [(r"^pp", "database"), (r"^ppweb", "web_api")]
    first_web = [(r"^ppweb", "web_api"), (r"^pp", "database")]
    assert infer_profile("ppweb001", first_db).profile == "database"
    assert infer_profile("ppweb001", first_web).profile == "web_api"
    assert "'^ppweb'" in infer_profile("ppweb001", first_web).reason


def test_bad_patterns_report_every_problem_in_one_error():
    with pytest.raises(ContractError) as err:
        ProfileMatcher([(r"^ok\d+$", "database"), (r"^(unclosed", "web_api"), (r"^x", "gpu")])
    text = str(err.value)
    assert "bad hostname patterns" in text
    assert "pattern 1" in text and "invalid regular expression" in text
    assert "pattern 2" in text and "unknown profile 'gpu'" in text
    assert "pattern 0" not in text


def test_pattern_that_is_not_a_pair_is_reported():
    with pytest.raises(ContractError, match=r"pattern 0: expected a \(regex, profile\) pair"):
        ProfileMatcher([("^only-a-regex",)])


# --- states ---------------------------------------------------------------------------------


def test_the_8_states():
    assert len(STATES) == 8
    assert set(STATES) == EXPECTED_STATES
    assert len(set(STATES)) == len(STATES)


# --- server ids and shards ------------------------------------------------------------------


def test_server_id_is_the_sha256_prefix_of_the_name():
    expected = hashlib.sha256(b"ppml0001").hexdigest()[:16]
    assert server_id("ppml0001") == expected
    assert re.fullmatch(r"[0-9a-f]{16}", server_id("ppdb042"))
    assert server_id("ppml0001") != server_id("ppml0002")


def test_server_hash_is_the_first_8_bytes_big_endian():
    digest = hashlib.sha256(b"pprisk003").digest()
    assert server_hash("pprisk003") == int.from_bytes(digest[:8], "big")
    assert 0 <= server_hash("x") < 2**64


def test_server_id_and_shard_do_not_depend_on_other_servers():
    names = [f"ppweb{i:03d}" for i in range(50)]
    alone = {n: (server_id(n), shard_of(n, 7)) for n in names}
    bigger = names + [f"ppdb{i:03d}" for i in range(50)]
    together = {n: (server_id(n), shard_of(n, 7)) for n in reversed(bigger)}
    assert all(together[n] == alone[n] for n in names)


@pytest.mark.parametrize("shards", [1, 2, 3, 8])
def test_shards_partition_the_fleet_exactly_once(shards):
    names = [f"ppml{i:04d}" for i in range(200)]
    parts: list[list[str]] = [[] for _ in range(shards)]
    for n in names:
        s = shard_of(n, shards)
        assert 0 <= s < shards
        assert s == server_hash(n) % shards
        parts[s].append(n)
    flat = [n for part in parts for n in part]
    assert sorted(flat) == sorted(names)  # every name once, none twice
    assert all(parts), "every shard gets some of 200 servers"
    again = [shard_of(n, shards) for n in names]
    assert again == [shard_of(n, shards) for n in names]


def test_shard_count_must_be_positive():
    with pytest.raises(ContractError, match="shard count must be at least 1, got 0"):
        shard_of("ppml0001", 0)


# --- versions -------------------------------------------------------------------------------


def test_contract_version_is_semver():
    assert re.fullmatch(r"\d+\.\d+\.\d+", CONTRACT_VERSION)


def test_same_major_version_is_accepted():
    major = CONTRACT_VERSION.split(".")[0]
    check_contract_version(CONTRACT_VERSION, "file.parquet")
    check_contract_version(f"{major}.99.3", "file.parquet")


def test_other_major_version_is_refused_with_both_versions():
    other = f"{int(CONTRACT_VERSION.split('.')[0]) + 1}.0.0"
    with pytest.raises(ContractError) as err:
        check_contract_version(other, "bundle.safetensors")
    text = str(err.value)
    assert "bundle.safetensors" in text
    assert f"contract {other}" in text
    assert CONTRACT_VERSION in text
    assert "regenerate or retrain" in text


def test_missing_version_is_refused():
    with pytest.raises(ContractError, match="x.parquet has no LINBORG contract version"):
        check_contract_version(None, "x.parquet")


def test_describe_is_plain_data_of_the_contract():
    doc = contract.describe()
    assert doc["contract_version"] == CONTRACT_VERSION
    assert doc["step_seconds"] == 300
    assert [m["name"] for m in doc["metrics"]] == list(EXPECTED_METRICS)
    assert [p["name"] for p in doc["profiles"]] == list(EXPECTED_PROFILES)
    assert set(doc["states"]) == EXPECTED_STATES
    assert doc["deprecated"]["latency_ms"] is None


# --- import weight --------------------------------------------------------------------------


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_the_contract_does_not_import_torch():
    done = _run_python(
        "import linborg, linborg.contract, linborg.thresholds, sys; "
        "assert 'torch' not in sys.modules"
    )
    assert done.returncode == 0, done.stderr


def test_import_linborg_loads_neither_pandas_nor_numpy():
    done = _run_python(
        "import linborg, sys; "
        "heavy = [m for m in ('pandas', 'numpy', 'pyarrow', 'torch') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    assert done.returncode == 0, done.stderr


def test_hostnames_match_case_insensitively():
    found = infer_profile("PPDB003.prod.example.com")
    assert found.profile == "database" and found.matched
