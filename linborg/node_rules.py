"""Recording rules that derive the LINBORG series from node_exporter (and process-exporter).

``render()`` returns the text of prometheus/rules/node_exporter.rules.yml (``linborg rules``
writes it with a header). docs/node-exporter.md explains every rule and its caveats.

Record names follow ``level:metric:operations``:

- level ``instance``: one series per scraped target; labels ``instance``, ``job``, ``server``
  and whatever target labels relabelling added (a ``profile`` label, for one, passes through);
- metric: the LINBORG wire name from linborg.contract, e.g. ``linborg_cpu_user_pct``;
- operations: ``rate5m`` (share of CPU time from counters over RATE_WINDOW), ``sum_rate5m``
  (rates summed over network devices), ``ratio`` (percent from a ratio of gauges) or ``gauge``
  (a node_exporter gauge, at most rescaled).

Every series gets ``server``: the host part of ``instance`` without the port. The rules add no
``profile`` label; the exporter infers the profile from the hostname, or reads a ``profile``
label that relabelling put on the target.
"""

from __future__ import annotations

from collections.abc import Callable

import yaml

from linborg.contract import METRICS, Metric, metric

# --- knobs: change them here, run `linborg rules`, commit the regenerated rule file ------------

#: Name of the one rule group in the generated file.
GROUP_NAME = "linborg-node-exporter"

#: Range of every rate() (CPU modes, Java CPU, network). It is part of the record names
#: (``:rate5m``), so changing it renames those series. Keep it at least four scrape intervals.
RATE_WINDOW = "5m"

#: Regex cutting ``server`` out of ``instance`` (Prometheus anchors it): the host without
#: ``:port`` and IPv6 brackets; ``ppml0001:9100`` -> ``ppml0001``, ``[::1]:9100`` -> ``::1``.
SERVER_FROM_INSTANCE = r"\[?(.+?)\]?(?::[0-9]+)?"

#: node_cpu_seconds_total modes (regex over ``mode``) summed into each CPU metric, as a share
#: of all CPU time. They cover every mode node_exporter reports on Linux, so the four add up to
#: 100 as in the training data: nice is user-space time, irq and softirq are kernel time (as in
#: ``sar -u``), and steal (time the hypervisor gave to others) counts as idle.
CPU_MODES = {
    "cpu_user_pct": "user|nice",
    "cpu_sys_pct": "system|irq|softirq",
    "cpu_iowait_pct": "iowait",
    "cpu_idle_pct": "idle|steal",
}

#: Mount point whose usage is disk_usage_pct, exactly as node_exporter reports it. Run
#: node_exporter with ``--path.rootfs=/host`` in a container so that ``/`` is the host's root.
DISK_MOUNTPOINT = "/"

#: File system types never taken as the data disk (regex over ``fstype``). overlay is the
#: container's own view, not the host's disk.
DISK_FSTYPE_EXCLUDE = "tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|autofs|fuse.lxcfs"

#: Network devices left out of net_in_mb_s and net_out_mb_s (regex over ``device``): loopback,
#: and virtual devices whose traffic also crosses a physical one (container and VM bridges,
#: overlays, tunnels, ifb shaping mirrors). Add bond members (or the bond) here.
NET_DEVICE_EXCLUDE = (
    "lo|veth.*|docker.*|br-.*|virbr.*|cali.*|flannel.*|cni.*|vxlan.*|kube-.*|ifb.*|tun.*|tap.*|wg.*"
)

#: Bytes per LINBORG megabyte (the contract's unit is megabytes per second, SI).
BYTES_PER_MB = 1_000_000

#: process-exporter (ncabatoff/process-exporter) name groups counted as Java (regex over
#: ``groupname``); java_cpu_pct is absent where no such group is scraped.
JAVA_GROUPNAME_REGEX = ".*java.*"

#: process-exporter CPU modes counted (regex over ``mode``). "user" keeps java_cpu_pct a part of
#: cpu_user_pct, as the contract says; "user|system" adds the JVM's kernel time.
JAVA_CPU_MODES = "user"

#: LINBORG metrics that get the host's total of CLOSE_WAIT sockets. node_exporter's tcpstat
#: collector cannot tell client from backend connections, so one metric gets the total and the
#: other stays absent (missing) instead of double-counting. tcpstat leaves out states with no
#: sockets; the rule reads that as 0 while tcpstat reports any state, and as absent without it.
CLOSE_WAIT_METRICS = ("front_close_wait",)

# --- rules -------------------------------------------------------------------------------------

SECONDS_PER_DAY = 86400


def _quote(text: str) -> str:
    """Return ``text`` as a PromQL string literal; raw (backticks) when it has backslashes."""
    if "\\" in text and "`" not in text:
        return f"`{text}`"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _with_server(expr: str) -> str:
    """Return ``expr`` with a ``server`` label cut out of ``instance``."""
    return (
        "label_replace(\n"
        f"{_indent(expr)},\n"
        f'  "server", "$1", "instance", {_quote(SERVER_FROM_INSTANCE)}\n'
        ")"
    )


def _rate_ops() -> str:
    return f"rate{RATE_WINDOW}"


def _cpu(m: Metric) -> tuple[str, str]:
    modes = _quote(CPU_MODES[m.name])
    return _rate_ops(), _with_server(
        f"sum without (cpu, mode) (rate(node_cpu_seconds_total{{mode=~{modes}}}[{RATE_WINDOW}]))\n"
        f"/ sum without (cpu, mode) (rate(node_cpu_seconds_total[{RATE_WINDOW}]))\n"
        "* 100"
    )


def _java(m: Metric) -> tuple[str, str]:
    selector = (
        "namedprocess_namegroup_cpu_seconds_total{"
        f"groupname=~{_quote(JAVA_GROUPNAME_REGEX)}, mode=~{_quote(JAVA_CPU_MODES)}}}"
    )
    java = _with_server(f"sum without (groupname, mode) (\n  rate({selector}[{RATE_WINDOW}])\n)")
    cpus = _with_server('node_cpu_seconds_total{mode="idle"}')
    return _rate_ops(), (
        f"{java}\n/ on (server) group_left ()\ncount by (server) (\n{_indent(cpus)}\n)\n* 100"
    )


def _mem(m: Metric) -> tuple[str, str]:
    return "ratio", _with_server(
        "(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes) * 100"
    )


def _swap(m: Metric) -> tuple[str, str]:
    return "ratio", _with_server(
        "(node_memory_SwapTotal_bytes - node_memory_SwapFree_bytes)\n"
        "/ (node_memory_SwapTotal_bytes > 0) * 100\n"
        "or 0 * (node_memory_SwapTotal_bytes == 0)"
    )


def _disk(m: Metric) -> tuple[str, str]:
    match = f"{{mountpoint={_quote(DISK_MOUNTPOINT)}, fstype!~{_quote(DISK_FSTYPE_EXCLUDE)}}}"
    # Used share as df shows it: used / (used + available to unprivileged users), written as
    # 1 - avail / (used + avail). The matcher on the left operand selects the file system.
    return "ratio", _with_server(
        "max without (device, fstype) (\n"
        f"  1 - node_filesystem_avail_bytes{match}\n"
        "  / (\n"
        "    node_filesystem_size_bytes - node_filesystem_free_bytes\n"
        "    + node_filesystem_avail_bytes\n"
        "  )\n"
        ") * 100"
    )


def _net(direction: str) -> Callable[[Metric], tuple[str, str]]:
    def build(m: Metric) -> tuple[str, str]:
        series = f"node_network_{direction}_bytes_total{{device!~{_quote(NET_DEVICE_EXCLUDE)}}}"
        return f"sum_{_rate_ops()}", _with_server(
            f"sum without (device) (rate({series}[{RATE_WINDOW}])) / {BYTES_PER_MB}"
        )

    return build


def _close_wait(m: Metric) -> tuple[str, str] | None:
    if m.name not in CLOSE_WAIT_METRICS:
        return None
    return "gauge", _with_server(
        'sum without (state) (node_tcp_connection_states{state="close_wait"})\n'
        "or 0 * count without (state) (node_tcp_connection_states)"
    )


def _load(m: Metric) -> tuple[str, str]:
    return "gauge", _with_server("node_load1")


def _uptime(m: Metric) -> tuple[str, str]:
    return "gauge", _with_server(f"(time() - node_boot_time_seconds) / {SECONDS_PER_DAY}")


#: LINBORG metric -> builder of (operations, PromQL), or None where it is not recorded.
_BUILDERS: dict[str, Callable[[Metric], tuple[str, str] | None]] = {
    **dict.fromkeys(CPU_MODES, _cpu),
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


def rules() -> list[dict[str, str]]:
    """Return the recording rules ({record, expr}) in the contract's metric order."""
    for name in (*_BUILDERS, *CPU_MODES, *CLOSE_WAIT_METRICS):
        metric(name)  # a ContractError names a key the contract does not know
    missing = [m.name for m in METRICS if m.name not in _BUILDERS]
    if missing:
        raise ValueError(f"no node_exporter source for {', '.join(missing)}")
    out = []
    for m in METRICS:
        built = _BUILDERS[m.name](m)
        if built is not None:
            operations, expr = built
            out.append({"record": record_name(m, operations), "expr": expr})
    return out


def records() -> dict[str, str]:
    """Return LINBORG metric name -> record name, for the metrics these rules record."""
    by_wire = {m.wire_name: m.name for m in METRICS}
    return {by_wire[r["record"].split(":")[1]]: r["record"] for r in rules()}


class _Dumper(yaml.SafeDumper):
    """Write multi-line strings (the PromQL) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def render() -> str:
    """Return the YAML text of the rule file (one group, default evaluation interval)."""
    doc = {"groups": [{"name": GROUP_NAME, "rules": rules()}]}
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100)
