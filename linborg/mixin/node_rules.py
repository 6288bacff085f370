"""Recording rules that derive the LINBORG series from node_exporter (and process-exporter).

``render()`` returns the text of prometheus/rules/node_exporter.rules.yml (``linborg rules``
writes it with a header). docs/node-exporter.md explains every rule and its caveats.

Record names follow ``level:metric:operations``:

- level ``instance``: one series per scraped target; labels ``instance``, ``job``, ``server``
  and whatever target labels relabelling added (a ``profile`` label, for one, passes through);
- metric: the LINBORG wire name from linborg.contract, e.g. ``linborg_cpu_user_pct``;
- operations: ``rate5m`` (share of CPU time from counters over the rate window), ``sum_rate5m``
  (rates summed over network devices), ``ratio`` (percent from a ratio of gauges) or ``gauge``
  (a node_exporter gauge, at most rescaled).

Every series gets ``server``: the host part of ``instance`` without the port. The rules add no
``profile`` label; the exporter infers the profile from the hostname, or reads a ``profile``
label that relabelling put on the target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

from linborg import mixin
from linborg.contract import METRICS, Metric, metric

# The knobs (group name, rate window, CPU modes, disk and network filters, process-exporter
# groups, CLOSE_WAIT metrics, the node_exporter and process-exporter selectors) are the
# ``node_*`` keys of CONFIG in linborg/mixin/__init__.py, each with a comment.

#: Bytes per LINBORG megabyte (the contract's unit is megabytes per second, SI).
BYTES_PER_MB = 1_000_000

SECONDS_PER_DAY = 86400


def _quote(text: str) -> str:
    """Return ``text`` as a PromQL string literal; raw (backticks) when it has backslashes."""
    if "\\" in text and "`" not in text:
        return f"`{text}`"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _with_server(expr: str, cfg: Mapping[str, Any]) -> str:
    """Return ``expr`` with a ``server`` label cut out of ``instance``."""
    return (
        "label_replace(\n"
        f"{_indent(expr)},\n"
        f'  "server", "$1", "instance", {_quote(cfg["node_server_from_instance"])}\n'
        ")"
    )


def _node(name: str, cfg: Mapping[str, Any], matchers: str = "") -> str:
    """Return a selector of the node_exporter series ``name``: the config's matchers first."""
    return _series(name, cfg["node_exporter_selector"], matchers)


def _series(name: str, selector: str, matchers: str) -> str:
    parts = [p for p in (selector.strip(), matchers) if p]
    return f"{name}{{{', '.join(parts)}}}" if parts else name


def _rate_ops(cfg: Mapping[str, Any]) -> str:
    return f"rate{cfg['node_rate_window']}"


def _cpu(m: Metric, cfg: Mapping[str, Any]) -> tuple[str, str]:
    modes = _quote(cfg["node_cpu_modes"][m.name])
    window = cfg["node_rate_window"]
    cpu = "node_cpu_seconds_total"
    return _rate_ops(cfg), _with_server(
        f"sum without (cpu, mode) (rate({_node(cpu, cfg, f'mode=~{modes}')}[{window}]))\n"
        f"/ sum without (cpu, mode) (rate({_node(cpu, cfg)}[{window}]))\n"
        "* 100",
        cfg,
    )


def _java(m: Metric, cfg: Mapping[str, Any]) -> tuple[str, str]:
    selector = _series(
        "namedprocess_namegroup_cpu_seconds_total",
        cfg["process_exporter_selector"],
        f"groupname=~{_quote(cfg['node_java_groupname_regex'])}, "
        f"mode=~{_quote(cfg['node_java_cpu_modes'])}",
    )
    java = _with_server(
        f"sum without (groupname, mode) (\n  rate({selector}[{cfg['node_rate_window']}])\n)",
        cfg,
    )
    cpus = _with_server(_node("node_cpu_seconds_total", cfg, 'mode="idle"'), cfg)
    return _rate_ops(cfg), (
        f"{java}\n/ on (server) group_left ()\ncount by (server) (\n{_indent(cpus)}\n)\n* 100"
    )


def _mem(m: Metric, cfg: Mapping[str, Any]) -> tuple[str, str]:
    available = _node("node_memory_MemAvailable_bytes", cfg)
    total = _node("node_memory_MemTotal_bytes", cfg)
    return "ratio", _with_server(f"(1 - {available} / {total}) * 100", cfg)


def _swap(m: Metric, cfg: Mapping[str, Any]) -> tuple[str, str]:
    total = _node("node_memory_SwapTotal_bytes", cfg)
    free = _node("node_memory_SwapFree_bytes", cfg)
    return "ratio", _with_server(
        f"({total} - {free})\n/ ({total} > 0) * 100\nor 0 * ({total} == 0)",
        cfg,
    )


def _disk(m: Metric, cfg: Mapping[str, Any]) -> tuple[str, str]:
    match = (
        f"mountpoint={_quote(cfg['node_disk_mountpoint'])}, "
        f"fstype!~{_quote(cfg['node_disk_fstype_exclude'])}"
    )
    # Used share as df shows it: used / (used + available to unprivileged users), written as
    # 1 - avail / (used + avail). The matcher on the left operand selects the file system.
    return "ratio", _with_server(
        "max without (device, fstype) (\n"
        f"  1 - {_node('node_filesystem_avail_bytes', cfg, match)}\n"
        "  / (\n"
        f"    {_node('node_filesystem_size_bytes', cfg)} - "
        f"{_node('node_filesystem_free_bytes', cfg)}\n"
        f"    + {_node('node_filesystem_avail_bytes', cfg)}\n"
        "  )\n"
        ") * 100",
        cfg,
    )


def _net(direction: str) -> Callable[[Metric, Mapping[str, Any]], tuple[str, str]]:
    def build(m: Metric, cfg: Mapping[str, Any]) -> tuple[str, str]:
        series = _node(
            f"node_network_{direction}_bytes_total",
            cfg,
            f"device!~{_quote(cfg['node_net_device_exclude'])}",
        )
        return f"sum_{_rate_ops(cfg)}", _with_server(
            f"sum without (device) (rate({series}[{cfg['node_rate_window']}])) / {BYTES_PER_MB}",
            cfg,
        )

    return build


def _close_wait(m: Metric, cfg: Mapping[str, Any]) -> tuple[str, str] | None:
    if m.name not in cfg["node_close_wait_metrics"]:
        return None
    states = "node_tcp_connection_states"
    return "gauge", _with_server(
        f"sum without (state) ({_node(states, cfg, 'state=' + _quote('close_wait'))})\n"
        f"or 0 * count without (state) ({_node(states, cfg)})",
        cfg,
    )


def _load(m: Metric, cfg: Mapping[str, Any]) -> tuple[str, str]:
    return "gauge", _with_server(_node("node_load1", cfg), cfg)


def _uptime(m: Metric, cfg: Mapping[str, Any]) -> tuple[str, str]:
    boot = _node("node_boot_time_seconds", cfg)
    return "gauge", _with_server(f"(time() - {boot}) / {SECONDS_PER_DAY}", cfg)


#: LINBORG metric -> builder of (operations, PromQL), or None where it is not recorded.
_BUILDERS: dict[str, Callable[[Metric, Mapping[str, Any]], tuple[str, str] | None]] = {
    "cpu_user_pct": _cpu,
    "cpu_sys_pct": _cpu,
    "cpu_iowait_pct": _cpu,
    "cpu_idle_pct": _cpu,
    "java_cpu_pct": _java,
    "mem_used_pct": _mem,
    "swap_used_pct": _swap,
    "disk_usage_pct": _disk,
    "net_in_mb_s": _net("receive"),
    "net_out_mb_s": _net("transmit"),
    "back_close_wait": _close_wait,
    "front_close_wait": _close_wait,
    "load_average": _load,
    "uptime_days": _uptime,
}


def record_name(m: Metric, operations: str) -> str:
    """Return the record name of ``m``, e.g. ``instance:linborg_mem_used_pct:ratio``."""
    return f"instance:{m.wire_name}:{operations}"


def rules(config: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """Return the recording rules ({record, expr}) in the contract's metric order.

    ``config`` overrides keys of the mixin's CONFIG.
    """
    cfg = mixin.config(config)
    for name in (*_BUILDERS, *cfg["node_cpu_modes"], *cfg["node_close_wait_metrics"]):
        metric(name)  # a ContractError names a key the contract does not know
    missing = [m.name for m in METRICS if m.name not in _BUILDERS]
    if missing:
        raise ValueError(f"no node_exporter source for {', '.join(missing)}")
    out = []
    for m in METRICS:
        built = _BUILDERS[m.name](m, cfg)
        if built is not None:
            operations, expr = built
            out.append({"record": record_name(m, operations), "expr": expr})
    return out


def records(config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Return LINBORG metric name -> record name, for the metrics these rules record."""
    by_wire = {m.wire_name: m.name for m in METRICS}
    return {by_wire[r["record"].split(":")[1]]: r["record"] for r in rules(config)}


class _Dumper(yaml.SafeDumper):
    """Write multi-line strings (the PromQL) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def render(config: Mapping[str, Any] | None = None) -> str:
    """Return the YAML text of the rule file (one group, default evaluation interval)."""
    doc = {"groups": [{"name": mixin.config(config)["node_group"], "rules": rules(config)}]}
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100)
