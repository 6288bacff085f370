#!/usr/bin/env bash
# Reproduce the shipped default model and its evaluation report (about 45 minutes on 2 cores):
# 30 days of the 90-server fleet (seed 7) -> `default` preset -> held-out backtest.
# Training is bounded by wall-clock time, so a slower or busier machine trains fewer epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
mkdir -p out
.venv/bin/linborg generate history --out out/train.parquet --days 30 --seed 7
.venv/bin/linborg train --data out/train.parquet --preset default --seed 7 --out models/default
.venv/bin/linborg generate heldout --out out/heldout.parquet --train-seed 7 --days 7 --seed 8
.venv/bin/linborg evaluate --model models/default --data out/heldout.parquet \
  --out models/default/evaluation --update-bundle
