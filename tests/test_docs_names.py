"""Every path and `linborg` command a doc names exists: docs say what the code does today.

Scans the tracked Markdown files: relative link targets must exist; repository paths in
backticks or code blocks (words starting with one of the repository's top-level folders) must
exist; and every
`linborg SUBCOMMAND --flag ...` in a code block or backticks must name a subcommand the CLI has
and only flags that subcommand accepts.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest

from linborg.app.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
#: Generated reports quote the command lines and data paths of the run that wrote them.
GENERATED = {"models/default/evaluation/report.md", "models/default/evaluation/real/report.md"}
#: Folders the project writes into at run time (outputs, not files of the repository).
OUTPUTS = ("out/", "build/", "dist/", ".venv/")
TOP = tuple(
    f"{p.name}/" for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".git")
) + (".ci/",)
#: Container images whose names begin like a folder of the repository.
IMAGES = {"grafana/grafana"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TICKED = re.compile(r"`([^`\n]+)`")
PLACEHOLDER = re.compile(r"[<>*{}$]|\b[A-Z_]{3,}\b|\.\.\.")
#: ``linborg SUB ...``, but not ``kubectl -n linborg get pods`` (there it is a namespace).
COMMAND = re.compile(
    r"(?:^|[\s`(|;&])(?<!-n )(?<!--namespace )(?<!--namespace=)linborg\s+([a-z][a-z-]*)"
    r"((?:[^`\n|;&#])*)"
)


def _docs() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / p for p in listed if p not in GENERATED]


def _nested(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001 - argparse has no public way to list them
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    subs = _nested(parser)
    assert subs, "the linborg parser has no subcommands"
    return subs


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}  # noqa: SLF001


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_repository_path_a_doc_names_exists(doc):
    text = doc.read_text()
    missing = []
    for target in LINK.findall(text):
        target = target.split("#")[0]
        if not target or re.match(r"[a-z]+:", target):
            continue
        if not (doc.parent / target).exists():
            missing.append(f"link {target}")
    # What the doc's own commands write (``--out models/my-fleet``, ``> deploy/secrets/KEY``)
    # exists only after them.
    written = tuple(
        w.rstrip("/") for w in re.findall(r"(?:--out[ =]|> ?)([^\s`]+)", text) if "/" in w
    )
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    blocks += re.findall(r"^(?: {4}|\t)(\S.*)$", text, flags=re.M)  # indented code
    for ticked in [*TICKED.findall(text), *blocks]:
        for word in ticked.split():
            word = word.strip("'\",.;()")
            if re.search(r":\d", word) or word in IMAGES:  # an image, not a path
                continue
            path = word.split(":")[0].split("#")[0]
            if not path.startswith(TOP) or path.startswith(OUTPUTS) or PLACEHOLDER.search(path):
                continue
            if written and path.startswith(written):
                continue
            # A README names files of its own folder relative to it (prometheus/tests/...).
            if not (ROOT / path).exists() and not (doc.parent / path).exists():
                missing.append(f"path {path}")
    assert not missing, f"{doc.relative_to(ROOT)} names what does not exist: {missing}"


def test_every_linborg_command_a_doc_names_exists_with_its_flags():
    subs = _subcommands(build_parser())
    wrong = []
    for doc in _docs():
        for line in doc.read_text().splitlines():
            for name, rest in COMMAND.findall(line):
                where = f"{doc.relative_to(ROOT)}: linborg {name}{rest.rstrip()}"
                if name not in subs:
                    if name in {"is", "does", "and", "to", "the"}:  # prose, not a command
                        continue
                    wrong.append(f"{where} (no subcommand {name!r})")
                    continue
                parser = subs[name]
                nested = _nested(parser)
                if nested:  # linborg generate history ...: the next word is the subcommand
                    words = rest.split()
                    if not words:  # the group itself ("`linborg generate`")
                        continue
                    if words[0] not in nested:
                        wrong.append(f"{where} (no subcommand of {name!r})")
                        continue
                    parser = nested[words[0]]
                known = _flags(parser)
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9.-]*)", rest):
                    if flag not in known:
                        wrong.append(f"{where} (no flag {flag})")
    assert not wrong, "\n".join(wrong)
