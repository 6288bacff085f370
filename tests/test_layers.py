"""Three floors, imports only downwards: core, then the stages, then the application.

- core: ``linborg`` and the modules directly in ``linborg/`` (contract, thresholds, features,
  risk, validate, parquet, prom, sources, duration, model, bundle, fused, ...), and the
  folders installed as package data (linborg.prometheus, linborg.alertmanager, linborg.models);
- stages: linborg.generator, linborg.trainer, linborg.exporter and linborg.mixin (rules and
  dashboards); each imports the core and itself, never another stage;
- application: linborg.app (the command line, ``linborg serve``, the demo supervisor),
  linborg.grafana (dashboard previews, which drive the demo stack) and ``linborg.__main__``.

docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Installed package -> folder of the checkout (pyproject.toml's package-dir).
FOLDERS = {
    "linborg": "linborg",
    "linborg.exporter": "exporter",
    "linborg.trainer": "trainer",
    "linborg.generator": "generator",
    "linborg.grafana": "grafana",
    "linborg.prometheus": "prometheus",
    "linborg.alertmanager": "alertmanager",
    "linborg.models": "models",
}
STAGES = ("linborg.generator", "linborg.trainer", "linborg.exporter", "linborg.mixin")
APPLICATION = ("linborg.app", "linborg.grafana", "linborg.__main__")
FLOOR = {"core": 0, "stage": 1, "application": 2}
#: Top-level names the old layout installed; nothing may import them any more.
OLD_TOP_LEVEL = ("exporter", "trainer", "generator", "grafana")


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer(name: str) -> str:
    """Return the floor of module ``name``."""
    if any(_within(name, p) for p in APPLICATION):
        return "application"
    if any(_within(name, p) for p in STAGES):
        return "stage"
    return "core"


def stage_of(name: str) -> str | None:
    return next((p for p in STAGES if _within(name, p)), None)


def modules() -> dict[str, Path]:
    """Return every module of the distribution -> its source file."""
    out = {}
    for package, folder in FOLDERS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            out[name] = path
    return out


def imports(path: Path, name: str, known: dict[str, Path]) -> list[tuple[str, int]]:
    """Return (imported module, line) for every import in ``path``, function-level ones too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.append((sub if sub in known else mod, node.lineno))
    return out


def graph() -> dict[str, list[tuple[str, int]]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        edges[name] = sorted(
            set(
                (target, line)
                for target, line in imports(path, name, known)
                if target.split(".")[0] in ("linborg", *OLD_TOP_LEVEL)
            )
        )
    return edges


def test_every_folder_is_found_and_each_module_has_one_floor():
    known = modules()
    assert "linborg.contract" in known and "linborg.exporter.cycle" in known
    assert "linborg.model" in known and "linborg.app.cli" in known
    assert layer("linborg.model") == "core"
    assert layer("linborg.mixin.alert_rules") == "stage"
    assert layer("linborg.app.stack") == "application"


def test_imports_only_point_down_and_stages_do_not_import_each_other():
    problems = []
    known = modules()
    for name, targets in graph().items():
        for target, line in targets:
            where = f"{known[name].relative_to(ROOT)}:{line}: {name} imports {target}"
            if target.split(".")[0] in OLD_TOP_LEVEL:
                problems.append(f"{where} (the old top-level name; use linborg.{target})")
            elif FLOOR[layer(target)] > FLOOR[layer(name)]:
                problems.append(f"{where} ({layer(name)} -> {layer(target)})")
            elif layer(name) == layer(target) == "stage" and stage_of(name) != stage_of(target):
                problems.append(f"{where} (stage -> another stage)")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_modules():
    edges = {
        name: sorted({t for t, _ in targets if t in graph_nodes and t != name})
        for graph_nodes in [set(modules())]
        for name, targets in graph().items()
    }
    # Tarjan's strongly connected components, iteratively.
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            child = next(it, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_importing_the_core_loads_nothing_above_it():
    core = sorted(n for n in modules() if layer(n) == "core")
    code = (
        "import importlib, json, sys\n"
        f"for name in {core!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    above = [n for n in loaded if n.startswith("linborg.") and layer(n) != "core"]
    old = [n for n in loaded if n.split(".")[0] in OLD_TOP_LEVEL]
    assert not above, f"importing the core loaded {above}"
    assert not old, f"importing the core loaded the old top-level packages {old}"
    assert "linborg.model" in loaded and "linborg.prom" in loaded
