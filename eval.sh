#!/usr/bin/env bash
# Serve each trained adapter (and the base model, n = 0) with vLLM and score it; rerun to resume.
#   nohup bash eval.sh > logs/eval.out 2>&1 &          (CONFIG=configs/paper.yaml bash eval.sh ...)
set -uo pipefail
cd "$(dirname "$0")"
exec .venv/bin/python infer_eval.py --config "${CONFIG:-configs/demo.yaml}" "$@"
