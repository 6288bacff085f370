#!/usr/bin/env bash
# Set everything up, then run the main job that exists so far: the synthetic fleet's live
# endpoint, with 24 h+ of history written for Prometheus backfill first. Until the one-command
# demo lands (issue 8) it does not start Prometheus, the exporter or Alertmanager itself.
# Ctrl-C stops it. Flags go to `linborg generate serve` (e.g. --listen 127.0.0.1:9200).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
mkdir -p out
echo "Load the history into a fresh Prometheus with:"
echo "  promtool tsdb create-blocks-from openmetrics out/backfill.om out/prometheus-data"
echo "Start an incident on a server with:"
echo "  .venv/bin/linborg generate scenario --server ppdb001 degrading --incident disk_fill"
exec .venv/bin/linborg generate serve --backfill out/backfill.om "$@"
