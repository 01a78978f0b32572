#!/usr/bin/env bash
# Train one LoRA adapter per (size, seed) of the config; rerun to resume, finished runs are skipped.
#   nohup bash train.sh > logs/train.out 2>&1 &        (CONFIG=configs/paper.yaml bash train.sh ...)
# Extra arguments go to both steps, e.g. bash train.sh --set data.sizes=[16,48]
set -uo pipefail
cd "$(dirname "$0")"
CONFIG=${CONFIG:-configs/demo.yaml}
[ -x .venv/bin/python ] || { echo "train.sh: $PWD/.venv/bin/python not found on $(hostname): run bash setup.sh in $PWD" >&2; exit 2; }
# study.sh has just run the data step itself (FEWSHOT_DATA_DONE=1): not twice per study
[ "${FEWSHOT_DATA_DONE:-}" = 1 ] || .venv/bin/python -m fewshot data --config "$CONFIG" "$@" || exit $?
exec .venv/bin/python -m fewshot train --config "$CONFIG" "$@"
