#!/usr/bin/env bash
# Set everything up, then run the whole test suite: ruff lint, ruff format check, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Two worker processes (pytest-xdist), one test file each at a time: the live-stack tests
# mostly wait on Prometheus and Alertmanager, so two files overlap well on 2 cores.
# `bash scripts/test.sh -n 0` runs serially; later arguments win. The 25 slowest steps are
# listed at the end, so that a run near the 15-minute budget says where the time went.
exec .venv/bin/python -m pytest -n 2 --dist loadfile --durations=25 "$@"
