#!/usr/bin/env bash
# The whole system on loopback, no Docker: set everything up (apt packages, virtualenv), then
# run `linborg demo`: a synthetic fleet with 26 h of history backfilled into a real Prometheus,
# its live endpoint, node_exporter, the exporter with the shipped model, the real rules, a real
# Alertmanager routing to a local webhook sink, and a scripted incident whose predicted-incident
# Slack warning reaches the sink before its onset. Ctrl-C stops everything.
# Flags go to `linborg demo` (ports: --prometheus-port 19090 ...; --fast for short intervals).
# `.venv/bin/linborg status` tells what is running, on which ports, with which model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/linborg demo "$@"
