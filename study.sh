#!/usr/bin/env bash
# The whole study on one config: data + train, eval, baselines, report (what `nohup bash train.sh`,
# `nohup bash eval.sh` and see_result.ipynb do, in one go). Stage times go to logs/study_times.jsonl.
set -uo pipefail
cd "$(dirname "$0")"
export CONFIG=${CONFIG:-configs/demo.yaml}
rc=0
stage() {
  local name=$1 t0=$SECONDS; shift
  "$@" || rc=1
  printf '{"stage": "%s", "seconds": %d, "config": "%s", "at": "%s"}\n' "$name" $((SECONDS - t0)) "$CONFIG" \
    "$(date -u +%FT%TZ)" >> logs/study_times.jsonl
}
stage train bash train.sh "$@"
stage eval bash eval.sh "$@"
stage baselines .venv/bin/python -m fewshot baselines --config "$CONFIG" "$@"
stage report .venv/bin/python -m fewshot report --config "$CONFIG" "$@"
exit $rc
