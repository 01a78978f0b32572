#!/usr/bin/env bash
# Serve each trained adapter (and the base model, n = 0) with vLLM and score it; rerun to resume.
#   nohup bash eval.sh > logs/eval.out 2>&1 &          (CONFIG=configs/paper.yaml bash eval.sh ...)
set -uo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || { echo "eval.sh: $PWD/.venv/bin/python not found on $(hostname): run bash setup.sh in $PWD" >&2; exit 2; }
exec .venv/bin/python infer_eval.py --config "${CONFIG:-configs/demo.yaml}" "$@"
