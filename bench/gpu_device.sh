#!/usr/bin/env bash
# Runs on a lent GPU machine (torch/transformers/peft/accelerate present, no registry, Python 3.12):
# installs the carried LLaMA-Factory wheels (.gpu/wheels) into a venv over the system packages, builds
# random-weight models of SmolLM2-135M's and of GLM-4-9B's dimensions, and runs train.sh unchanged
# on configs/paper.yaml (only model and data source overridden), seed settings and fast settings.
#   bash bench/gpu_device.sh OUT_DIR
set -euo pipefail
OUT=${1:?out dir}
PY=$(command -v python3)   # the machine's own env (torch, transformers, peft, accelerate)
"$PY" -m pip install -q --no-index --no-deps --target /tmp/lf/site .gpu/wheels/*.whl
rm -f /tmp/lf/site/torchaudio/lib/*.so
mkdir -p /tmp/lf/bin .venv/bin   # env folders as fewshot expects them, over that interpreter
printf '#!/bin/sh\nPYTHONPATH=/tmp/lf/site exec %s "$@"\n' "$PY" > /tmp/lf/bin/python
printf '#!/bin/sh\nPYTHONPATH=/tmp/lf/site exec %s -c "from llamafactory.cli import main; main()" "$@"\n' "$PY" \
  > /tmp/lf/bin/llamafactory-cli
printf '#!/bin/sh\nexec %s "$@"\n' "$PY" > .venv/bin/python
chmod +x /tmp/lf/bin/* .venv/bin/python
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
/tmp/lf/bin/python - <<'PY'
import json, shutil, torch
from pathlib import Path
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
src = Path(".gpu/smollm2")
base = json.loads((src / "config.json").read_text())
dims = {"smollm2-random": {}, "glm4-9b-dims-random": dict(hidden_size=4096, num_hidden_layers=40,
        num_attention_heads=32, num_key_value_heads=2, intermediate_size=13696, vocab_size=151552,
        head_dim=128, tie_word_embeddings=False)}
for name, over in dims.items():
    out = Path("models") / name
    if (out / "config.json").exists():
        continue
    cfg = LlamaConfig(**{**{k: v for k, v in base.items() if k not in ("architectures", "_model_name_or_path",
                                                                        "transformers_version", "dtype")}, **over})
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        shutil.copy(src / f, out / f)
    print(name, sum(p.numel() for p in model.parameters()) / 1e9, "B params")
PY
run() {  # run NAME MODEL EXTRA_SET
  local name=$1 model=$2 extra=$3
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/mem_$name.csv" &
  local smi=$!
  FEWSHOT_TRAIN_ENV=/tmp/lf CONFIG=configs/paper.yaml \
  FEWSHOT_SET="model.name_or_path=models/$model;model.template=smollm2;data.source=builtin;data.sizes=[100];train.out_dir=saves/$name;train.log_dir=logs/$name;train.save_steps=1000$extra" \
    bash train.sh > "$OUT/train_$name.out" 2>&1 || echo "run $name failed" >> "$OUT/failed.txt"
  kill $smi
  cp "logs/$name/train_summary.jsonl" "$OUT/summary_$name.jsonl" 2>/dev/null || true
}
FAST=";train.per_device_train_batch_size=8;train.gradient_accumulation_steps=1;train.gradient_checkpointing=false;train.extra={flash_attn: auto, trust_remote_code: true}"
run small_seed smollm2-random ""
run small_fast smollm2-random "$FAST"
run glm_seed glm4-9b-dims-random ""
run glm_fast glm4-9b-dims-random "$FAST"
tail -n 3 logs/*/llm_train_100.train.log > "$OUT/tails.txt" 2>&1 || true
