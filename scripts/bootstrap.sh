#!/usr/bin/env bash
# Set up everything LINBORG needs on a fresh Debian or Ubuntu machine. Safe to run again.
#
#   - system packages the tests and the demo use (Prometheus, promtool, Alertmanager, amtool,
#     node_exporter, VictoriaMetrics, kubectl for `kubectl kustomize`), installed with apt-get
#     when missing;
#   - a virtualenv in .venv/ with torch==2.13.0 (CPU build) installed before the project,
#     then the project itself with its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'bootstrap: %s\n' "$*" >&2; }

# --- system packages ------------------------------------------------------------------------
# binary -> Debian package
declare -A PACKAGE_OF=(
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager
  [prometheus-node-exporter]=prometheus-node-exporter
  [victoria-metrics]=victoria-metrics
  [kubectl]=kubectl
)
missing=()
for bin in "${!PACKAGE_OF[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[$bin]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if ! command -v apt-get >/dev/null 2>&1; then
    log "missing system packages: ${missing[*]}"
    log "this machine has no apt-get; install the binaries prometheus, promtool,"
    log "prometheus-alertmanager, amtool, prometheus-node-exporter and victoria-metrics"
    log "(Prometheus 2.x, Alertmanager 0.25+) on PATH and run this again."
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "need root or sudo to apt-get install ${missing[*]}"; exit 1; }
    SUDO="sudo"
  fi
  log "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python ---------------------------------------------------------------------------------
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.linborg-installed
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # torch first: the CPU build is on disk here; letting pip resolve plain torch pulls CUDA.
  log "installing torch==2.13.0 (CPU build)"
  .venv/bin/pip install -q torch==2.13.0
  log "installing linborg with dev extras"
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" >"$stamp"
fi
log "ready: $(.venv/bin/linborg --version)"
