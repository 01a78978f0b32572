#!/usr/bin/env bash
# Score the GPU-trained paper-size adapters (saves/paper_gpu, from bench/gpu_device.sh paper3) on this
# CPU with the normal eval.sh on the test split, then TF-IDF at the same sizes and seeds and the report;
# every setting is in configs/paper_debian.yaml. The encoder and SetFit ran on the GPU (phase pbase:
# objs/paper/encoder_*, setfit_*); on 2 CPU cores they take hours at these sizes. Finished runs are
# skipped, so it can be rerun to add methods:  METHODS='["tfidf","setfit"]' bash bench/paper_cpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
METHODS=${METHODS:-'["tfidf"]'}
export CONFIG=configs/paper_debian.yaml
# the paper preset trains fp16 (GPU), which a CPU server runs as float32; bf16 only where native
.venv/bin/python -c "from fewshot.devices import cpu_has_native_bf16 as n; exit(not n())" && export FEWSHOT_CPU_DTYPE=bfloat16
export FEWSHOT_SET="baselines.methods=$METHODS"
t0=$SECONDS
.venv/bin/python -m fewshot data --config $CONFIG
bash eval.sh; echo "[paper] eval $((SECONDS - t0)) s"
t1=$SECONDS
.venv/bin/python -m fewshot baselines --config $CONFIG; echo "[paper] baselines $((SECONDS - t1)) s"
.venv/bin/python -m fewshot curve --config $CONFIG && .venv/bin/python -m fewshot report --config $CONFIG; echo "[paper] total $((SECONDS - t0)) s"
