#!/usr/bin/env bash
# Train one LoRA adapter per (size, seed) of the config; rerun to resume, finished runs are skipped.
#   nohup bash train.sh > logs/train.out 2>&1 &        (CONFIG=configs/paper.yaml bash train.sh ...)
# Extra arguments go to both steps, e.g. bash train.sh --set data.sizes=[16,48]
set -uo pipefail
cd "$(dirname "$0")"
CONFIG=${CONFIG:-configs/demo.yaml}
.venv/bin/python -m fewshot data --config "$CONFIG" "$@" || exit $?
exec .venv/bin/python -m fewshot train --config "$CONFIG" "$@"
