"""PNG previews of the six dashboards, drawn with matplotlib from live query results.

Not Grafana's rendering: one small plot per panel, in the dashboard's order (rows left out),
each running the panel's own queries with the template variables filled in: lines for time
series over the dashboard's default time range, the last value of each series for stats, the
first rows for tables, a histogram, the text of text panels. The forecast fans read the
exporter's forecast path API, everything else Prometheus. ``linborg previews`` writes
``docs/dashboards/<uid>.png``; with ``--demo`` it first starts a small stack on loopback with
replayed past forecasts (see linborg/app/stack.py) and stops it afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import textwrap
import time
from pathlib import Path

import requests

#: Where the previews are written (grafana/README.md shows them).
OUT_DIR = Path("docs/dashboards")
#: Subplots per line of the grid.
COLUMNS = 4
#: Figure width and the least height, in inches at DPI (1600 x 1000 pixels).
WIDTH, MIN_HEIGHT, DPI = 16.0, 10.0, 100
#: Height per line of the grid, in inches; dashboards with many panels get a taller figure.
LINE_HEIGHT = 2.2
#: Points per series of a range query (about Grafana's default for a panel this wide).
POINTS = 240
#: Rows shown of a table panel, lines of a text panel and characters per line.
TABLE_ROWS, TEXT_LINES, TEXT_WIDTH = 8, 12, 80
#: Series with fewer points than this are drawn with markers, so that a few minutes of data
#: (recording rules of a stack started just now) show on a day-long axis.
FEW_POINTS = 30
#: Labels a table or legend leaves out, as Grafana's panels do with their "organize" steps.
HIDDEN_LABELS = {"__name__", "job", "instance"}
#: Line colours by legend, as the dashboards' overrides colour them.
COLOURS = {
    "actual": "green",
    "p10": "lightsteelblue",
    "p50": "tab:blue",
    "p90": "lightsteelblue",
    "warning": "orange",
    "critical": "red",
}
#: Longest panel title drawn, in characters (longer ones are cut with an ellipsis).
TITLE_CHARS = 60
#: The demo stack: a small fleet at the end-to-end test's pace, with replayed forecasts and
#: two servers whose history is partly missing (one added 3 hours ago, one with a 2-hour gap).
DEMO_FLEET = {"ml_compute": 3, "database": 2, "web_api": 2}
DEMO_REPLAY_HOURS = 9
DEMO_HISTORY_GAPS = {"ppml0002": (48.0, 3.0), "ppdb002": (14.0, 12.0)}
#: The demo draws once a predicted incident fires and the quality rules (evaluated once a
#: minute) have this many results, so that their panels show more than a dot.
DEMO_QUALITY_EVALUATIONS = 5

_RELATIVE = re.compile(r"^now(?:([+-])(\d+)([smhdw]))?$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def relative_time(text: str, now: float) -> float:
    """Return the Unix time of a Grafana relative time such as ``now-6h`` or ``now+8h``."""
    m = _RELATIVE.match(text)
    if not m:
        raise ValueError(f"time '{text}' is not like now, now-6h or now+8h")
    if not m.group(1):
        return now
    sign = 1 if m.group(1) == "+" else -1
    return now + sign * int(m.group(2)) * _SECONDS[m.group(3)]


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Return the legend of a series: ``fmt`` with ``{{label}}`` put in, else its labels."""
    if fmt:
        return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), fmt).strip()
    shown = {k: v for k, v in labels.items() if k not in HIDDEN_LABELS}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"


def fmt_value(value: float, unit: str) -> str:
    """Return ``value`` as a panel would show it in ``unit`` (the common units only)."""
    if math.isnan(value):
        return "NaN"
    if unit == "s":
        for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
            if abs(value) >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} s"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "percent":
        return f"{value:.1f}%"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"


class Source:
    """Run panel queries: Prometheus for its data source, the exporter for the forecast API."""

    def __init__(self, prometheus: str, exporter: str, timeout: float = 30):
        from linborg.mixin import CONFIG

        self.urls = {CONFIG["forecasts_datasource_uid"]: exporter.rstrip("/")}
        self.prometheus = prometheus.rstrip("/")
        self.timeout = timeout

    def query(self, ds: str, expr: str, start: float, end: float, instant: bool) -> list[dict]:
        """Return the result of ``expr``: at ``end`` if ``instant``, else over start..end."""
        url = self.urls.get(ds, self.prometheus)
        if instant:
            path, params = "/api/v1/query", {"query": expr, "time": end}
        else:
            step = max(30, math.ceil((end - start) / POINTS))
            path = "/api/v1/query_range"
            params = {"query": expr, "start": start, "end": end, "step": step}
        resp = requests.post(url + path, data=params, timeout=self.timeout)
        resp.raise_for_status()
        return resp.json()["data"]["result"]


def _series(result: list[dict]) -> list[tuple[dict, list[float], list[float]]]:
    """Return (labels, times, values) of each series of a query result."""
    out = []
    for r in result:
        points = r.get("values") or ([r["value"]] if "value" in r else [])
        times = [float(t) for t, _ in points]
        values = [float(v) for _, v in points]
        out.append((r["metric"], times, values))
    return out


def _draw_lines(ax, data: list[tuple[str, dict, list[float], list[float]]], start, end) -> None:
    """Draw each series as a line; fill between the p10 and p90 series as the dashboards do."""
    from matplotlib import dates

    by_legend = {}
    for name, _, times, values in data:
        stamps = [dt.datetime.fromtimestamp(t, dt.UTC) for t in times]
        style = "--" if name in ("warning", "critical") else "-"
        marker = "." if len(values) < FEW_POINTS else None
        ax.plot(stamps, values, style, lw=1, label=name, color=COLOURS.get(name), marker=marker)
        by_legend[name] = dict(zip(stamps, values, strict=True))
    low, high = by_legend.get("p10"), by_legend.get("p90")
    if low and high:
        common = sorted(set(low) & set(high))
        ax.fill_between(common, [low[t] for t in common], [high[t] for t in common], alpha=0.2)
    ax.set_xlim(dt.datetime.fromtimestamp(start, dt.UTC), dt.datetime.fromtimestamp(end, dt.UTC))
    ax.xaxis.set_major_locator(dates.AutoDateLocator(maxticks=5))
    ax.xaxis.set_major_formatter(
        dates.DateFormatter("%H:%M" if end - start <= 86400 else "%d %H:%M")
    )
    if 0 < len(by_legend) <= 6:
        ax.legend(fontsize=6, loc="upper left", frameon=False, ncol=2)


def draw_panel(ax, panel: dict, source: Source, values: dict, start: float, end: float) -> None:
    """Draw one panel into ``ax`` from its queries."""
    from linborg.mixin.dashboards import substitute

    title = substitute(panel["title"], values)
    if panel.get("timeFrom"):
        title += f" (last {panel['timeFrom']})"
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 3] + "..."
    ax.set_title(title, fontsize=8, loc="left")
    ax.tick_params(labelsize=6)
    kind = panel["type"]
    if kind == "text":
        content = (panel.get("options") or {}).get("content") or panel.get("content", "")
        text = [w for line in content.splitlines() for w in textwrap.wrap(line, TEXT_WIDTH)]
        more = ["..."] if len(text) > TEXT_LINES else []
        ax.axis("off")
        ax.text(0, 1, "\n".join(text[:TEXT_LINES] + more), fontsize=5.5, va="top",
                family="monospace", transform=ax.transAxes)  # fmt: skip
        return
    unit = (panel.get("fieldConfig", {}).get("defaults", {}) or {}).get("unit") or ""
    data = []
    for target in panel.get("targets", []):
        ds = (target.get("datasource") or panel.get("datasource") or {}).get("uid", "")
        expr = substitute(target["expr"], values)
        result = source.query(substitute(ds, values), expr, start, end, target.get("instant"))
        for labels, times, vals in _series(result):
            fmt = target.get("legendFormat", "")
            name = "" if kind == "stat" and not fmt else legend(fmt, labels)
            data.append((name, labels, times, vals))
    if not data:
        ax.axis("off")
        ax.text(0.5, 0.5, "no data", ha="center", va="center", color="grey", fontsize=9,
                transform=ax.transAxes)  # fmt: skip
        return
    if kind in ("timeseries", "status-history"):
        _draw_lines(ax, data, start, end)
    elif kind == "histogram":
        ax.hist([v[-1] for _, _, _, v in data if v], bins=10, color="tab:blue")
    elif kind == "stat":
        ax.axis("off")
        text_only = panel.get("options", {}).get("textMode") == "name"
        shown = [name if text_only else f"{name}  {fmt_value(v[-1], unit)}".strip()
                 for name, _, _, v in data if v]  # fmt: skip
        size = 18 if len(shown) == 1 else 9
        ax.text(0.5, 0.45, "\n".join(shown[:6]), ha="center", va="center", fontsize=size,
                transform=ax.transAxes)  # fmt: skip
    else:  # table
        ax.axis("off")
        rows = []
        for _, labels, _, vals in data[:TABLE_ROWS]:
            shown = ", ".join(f"{v}" for k, v in sorted(labels.items()) if k not in HIDDEN_LABELS)
            rows.append(f"{shown[:48]:<48} {fmt_value(vals[-1], unit) if vals else ''}")
        more = f"\n... {len(data) - TABLE_ROWS} more" if len(data) > TABLE_ROWS else ""
        ax.text(0, 1, "\n".join(rows) + more, fontsize=5.5, va="top", family="monospace",
                transform=ax.transAxes)  # fmt: skip


def panel_range(panel: dict, start: float, end: float, now: float) -> tuple[float, float]:
    """Return the time range of ``panel``: its own relative time (``timeFrom``), if any."""
    if panel.get("timeFrom"):
        return relative_time(f"now-{panel['timeFrom']}", now), now
    return start, end


def render_dashboard(doc: dict, source: Source, values: dict, path: Path, now: float) -> Path:
    """Draw one dashboard's panels in a grid and write the PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from linborg.mixin.dashboards import iter_panels

    panels = [p for p in iter_panels(doc["panels"]) if p["type"] != "row"]
    start = relative_time(doc["time"]["from"], now)
    end = relative_time(doc["time"]["to"], now)
    values = {**values, "__range": f"{int(end - start)}s"}
    lines = math.ceil(len(panels) / COLUMNS)
    height = max(MIN_HEIGHT, LINE_HEIGHT * lines)
    fig, axes = plt.subplots(lines, COLUMNS, figsize=(WIDTH, height), dpi=DPI, squeeze=False)
    try:
        for ax, panel in zip(axes.flat, panels, strict=False):
            draw_panel(ax, panel, source, values, *panel_range(panel, start, end, now))
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        when = f"{dt.datetime.fromtimestamp(now, dt.UTC):%Y-%m-%d %H:%M} UTC"
        about = f", server {values['server']}" if "$server" in json.dumps(doc) else ""
        fig.suptitle(
            f"{doc['title']}\n{doc['time']['from']} to {doc['time']['to']} at {when}{about}; "
            "preview drawn by `linborg previews` from live queries, not by Grafana",
            fontsize=11,
        )
        top, bottom = 1 - 1.2 / height, 0.3 / height  # 1.2 inches for the title lines
        line = height * (top - bottom) / lines
        fig.subplots_adjust(left=0.03, right=0.99, bottom=bottom, top=top, wspace=0.18,
                            hspace=0.55 / (line - 0.55))  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def top_server(prometheus: str) -> str | None:
    """Return the server with the highest 8h risk now, or None when there is none."""
    resp = requests.post(
        prometheus.rstrip("/") + "/api/v1/query",
        data={"query": 'topk(1, max by (server) (linborg_risk_score{window="8h"}))'},
        timeout=30,
    )
    resp.raise_for_status()
    result = resp.json()["data"]["result"]
    return result[0]["metric"]["server"] if result else None


def render_previews(
    prometheus: str, exporter: str, out: Path = OUT_DIR, server: str | None = None
) -> list[Path]:
    """Write one PNG per dashboard into ``out``; return the paths written."""
    from linborg.mixin.dashboards import SAMPLE_VALUES, render_all

    values = {**SAMPLE_VALUES, "server": server or top_server(prometheus) or "ppml0001"}
    source = Source(prometheus, exporter)
    now = time.time()
    written = []
    for text in render_all().values():
        doc = json.loads(text)
        written.append(render_dashboard(doc, source, values, out / f"{doc['uid']}.png", now))
    return written


def _has(prometheus: str, query: str) -> bool:
    resp = requests.post(prometheus + "/api/v1/query", data={"query": query}, timeout=10)
    return bool(resp.json()["data"]["result"])


def demo(out: Path, workdir: Path, wait: float = 900) -> list[Path]:
    """Start a small stack with replayed forecasts, wait for a predicted incident, render."""
    from linborg.app.stack import Options, Stack, free_stack_ports, wait_until
    from linborg.mixin.alert_rules import INCIDENT
    from linborg.mixin.quality_rules import mae_record

    ports = free_stack_ports()
    opts = Options(
        workdir=workdir,
        ports=ports,
        composition=dict(DEMO_FLEET),
        exporter_interval="10s",
        scrape_interval="2s",
        evaluation_interval="2s",
        rule_overrides={"for_critical": "20s", "for_warning": "20s"},
        alert_group_wait="1s",
        replay_hours=DEMO_REPLAY_HOURS,
        history_gaps=dict(DEMO_HISTORY_GAPS),
    )
    stack = Stack(opts, log=lambda line: print(line, flush=True))
    try:
        stack.start()
        prometheus = stack.urls()["prometheus"]
        firing = f'ALERTS{{alertname="{INCIDENT}", alertstate="firing"}}'
        quality = f"count_over_time({mae_record()}[1h]) >= {DEMO_QUALITY_EVALUATIONS}"
        wait_until(
            lambda: _has(prometheus, firing) and _has(prometheus, quality),
            wait,
            f"a firing {INCIDENT} and {DEMO_QUALITY_EVALUATIONS} quality rule evaluations",
            interval=5,
        )
        exporter = f"http://127.0.0.1:{ports.exporter}"
        return render_previews(prometheus, exporter, out, opts.script.server)
    finally:
        stack.stop()


def add_parser(sub) -> None:
    """Add `previews` to the `linborg` parser."""
    p = sub.add_parser("previews", help="draw PNG previews of the dashboards from live data")
    p.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus URL")
    p.add_argument("--exporter", default="http://127.0.0.1:9106", help="exporter URL")
    p.add_argument("--server", help="server of the server dashboard (default: highest risk)")
    p.add_argument("--out", default=str(OUT_DIR), help="folder to write <uid>.png into")
    p.add_argument(
        "--demo",
        action="store_true",
        help="start a small stack with replayed forecasts on free ports, draw, stop it",
    )
    p.add_argument("--workdir", default="out/previews", help="the demo stack's working folder")
    p.set_defaults(func=cmd_previews)


def cmd_previews(args: argparse.Namespace) -> int:
    """Write the dashboard previews."""
    if args.demo:
        paths = demo(Path(args.out), Path(args.workdir))
    else:
        paths = render_previews(args.prometheus, args.exporter, Path(args.out), args.server)
    for path in paths:
        print(path)
    return 0
