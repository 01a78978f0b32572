#!/usr/bin/env bash
# The whole study on one config: data + train, eval, baselines, curve + report (what `nohup bash train.sh`,
# `nohup bash eval.sh` and see_result.ipynb do, in one go). It prints an estimate for this machine
# first, then each stage as it starts; stage times go to logs/study_times.jsonl.
set -uo pipefail
cd "$(dirname "$0")"
export CONFIG=${CONFIG:-configs/demo.yaml}
[ -x .venv/bin/python ] || { echo "study.sh: $PWD/.venv/bin/python not found on $(hostname): run bash setup.sh in $PWD" >&2; exit 2; }
rc=0 n=0
.venv/bin/python -m fewshot data --config "$CONFIG" "$@" || exit $?
.venv/bin/python -m fewshot estimate --config "$CONFIG" "$@"
stage() {
  local name=$1 t0=$SECONDS; shift
  n=$((n + 1))
  echo "[study] stage $n of 4: $name, started $(date +%H:%M)"
  "$@" || rc=1
  printf '{"stage": "%s", "seconds": %d, "config": "%s", "at": "%s"}\n' "$name" $((SECONDS - t0)) "$CONFIG" \
    "$(date -u +%FT%TZ)" >> logs/study_times.jsonl
  echo "[study] stage $n of 4: $name took $(((SECONDS - t0) / 60)) min $(((SECONDS - t0) % 60)) s"
}
stage train env FEWSHOT_DATA_DONE=1 bash train.sh "$@"
stage eval bash eval.sh "$@"
stage baselines .venv/bin/python -m fewshot baselines --config "$CONFIG" "$@"
report() {  # the curve step writes the answer and the plan; the report only reads and draws
  .venv/bin/python -m fewshot curve --config "$CONFIG" "$@" && .venv/bin/python -m fewshot report --config "$CONFIG" "$@"
}
stage report report "$@"
exit $rc
