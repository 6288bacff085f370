#!/usr/bin/env bash
# Set everything up, then run the main job. Until the demo lands (issue 8) this prints the
# data contract and its thresholds, which is what exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/linborg contract "$@"
