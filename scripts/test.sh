#!/usr/bin/env bash
# Set everything up, then run the whole test suite: ruff lint, ruff format check, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
