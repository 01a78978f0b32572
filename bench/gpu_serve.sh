#!/usr/bin/env bash
# eval.sh on a GPU machine with no package registry: the paper-size adapters of configs/paper_debian.yaml
# trained there with train.sh, then scored with eval.sh in multi_lora mode through `vllm serve` and the
# study's langchain-openai client. The wheels come in parts made by bench/gpu_serve_carry.sh, one part a
# call, each call right after the last (the machine keeps /tmp/gpu between calls while it is held):
#   probe  the machine's Python, torch and CUDA against what the carry was made for (stops there if they
#          differ), the GPU; keeps the part and the data step's files (made on a CPU) sent with it
#   take   keeps the part sent with this call
#   unpack SET  unpacks and installs one set into $G/SET (the offline check of the carry)
#   train  unpacks and installs the train set (site), makes the model from its GGUF, starts train.sh in
#          the background (12 runs, three at a time on the card)
#   serve  unpacks and installs the serve set (vsite), checks that vLLM imports and sees the GPU
#   eval   waits for train.sh, then eval.sh with eval.mode=multi_lora (and $EVAL_SET), timed; back: the
#          predictions, the server's log and up to 6 adapters (for scoring on a CPU)
#   fetch  the next adapters
#   adapters  adapters trained before, carried in as tars, in place of train.sh (with TRAIN=0 train)
# Found on one H100 (2026-12-06, docs/gpu.md) and folded in here and in the carry: FlashInfer is not
# carried, so its sampler is off; xgrammar 0.2.3; no HF `kernels`; truststore beside the client.
#   bash bench/gpu_serve.sh PHASE
set -euo pipefail
PHASE=$1
G=${GPU_DIR:-/tmp/gpu} C=${CARRY_DIR:-.gpu/serve}
SITE=$G/site VSITE=$G/vsite
OUT=${OUT:-$G/out}
PY=$(command -v python3)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 FEWSHOT_TRAIN_ENV=$G/env FEWSHOT_SERVE_ENV=$G/senv
mkdir -p $G/parts $G/res "$OUT"
REPO=$G/repo
LOG=$G/res/gpu_serve.log
say() { echo "[gpu] $SECONDS s: $*" | tee -a $LOG; }

take() {  # the parts this call carries, checked against the list made with them
  for p in $C/parts/*.[0-9][0-9]; do if [ -f "$p" ]; then cp "$p" $G/parts/; fi; done
  if [ -f $C/sets.txt ]; then cp $C/sets.txt $G/; fi
  say "parts here: $(cd $G && ls parts | tr '\n' ' ')"
}
unpack() {  # unpack SET into $G/whl/SET once every part is here and matches its checksum
  local set=$1
  [ -f $G/whl/$set.ok ] && return 0
  (cd $G && grep " parts/$set\." sets.txt | sha256sum -c --quiet) || { say "parts of $set missing or damaged"; return 1; }
  mkdir -p $G/whl && cat $G/parts/$set.[0-9]* | unzst | tar -x -C $G/whl && touch $G/whl/$set.ok
  say "$set: $(ls $G/whl/$set | wc -l) wheels unpacked"
}
unzst() {  # zstd -d, or the same in Python where the machine has no zstd (its wheel comes with the probe)
  if command -v zstd > /dev/null; then zstd -d -q; else PYTHONPATH=$G/tools "$PY" -c \
    "import sys, zstandard; zstandard.ZstdDecompressor().copy_stream(sys.stdin.buffer, sys.stdout.buffer)"; fi
}
envs() {  # the env folders the study expects, over the machine's python and the installed sets
  mkdir -p $G/env/bin $G/senv/bin $REPO/.venv/bin
  printf '#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec %s "$@"\n' "$SITE" "$PY" > $G/env/bin/python
  printf '#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec %s -c "import sys; from llamafactory.cli import main; sys.exit(main())" "$@"\n' \
    "$SITE" "$PY" > $G/env/bin/llamafactory-cli
  cp $G/env/bin/python $REPO/.venv/bin/python
  # serving: vLLM's set first, then the train set's transformers 5.6.0 (the tokenizer training used)
  printf '#!/bin/sh\nPYTHONPATH=%s:%s${PYTHONPATH:+:$PYTHONPATH} exec %s "$@"\n' "$VSITE" "$SITE" "$PY" > $G/senv/bin/python
  # FlashInfer is not carried: vLLM's sampler would import it (greedy answers never use its top-k/top-p)
  printf '#!/bin/sh\nVLLM_USE_FLASHINFER_SAMPLER=0 PYTHONPATH=%s:%s${PYTHONPATH:+:$PYTHONPATH} exec %s -c "import sys; from vllm.entrypoints.cli.main import main; sys.argv[0] = \\"vllm\\"; sys.exit(main())" "$@"\n' \
    "$VSITE" "$SITE" "$PY" > $G/senv/bin/vllm
  chmod +x $G/env/bin/* $G/senv/bin/* $REPO/.venv/bin/python
}
install() {  # pip, offline, every wheel of SET into DIR (no resolver: the set is complete by design)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" $G/whl/$1/*.whl 2>&1 \
    | grep -v "^WARNING: Target directory" || true
  say "$1 installed in $2"
}
train_pid() { [ -f $G/train.pid ] && kill -0 "$(cat $G/train.pid)" 2>/dev/null; }

case $PHASE in
probe)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $LOG
  "$PY" - <<'EOF' 2>&1 | tee -a $LOG
import sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))
ok = sys.version_info[:2] == (3, 12) and torch.__version__.startswith("2.11.0") and torch.version.cuda.startswith("13.")
sys.exit(0 if ok else "the carry was made for Python 3.12, torch 2.11.0, CUDA 13: make it again for this machine")
EOF
  "$PY" -m pip install -q --no-index --no-deps --target $G/tools $C/tools/*.whl
  mkdir -p $REPO && tar --exclude=./.gpu -cf - . | tar -xf - -C $REPO
  mkdir -p $REPO/data && unzst < $C/data_paper.tar.zst | tar -x -C $REPO/data
  say "zstd: $(command -v zstd || echo 'none, Python zstandard'); data: $(ls $REPO/data/paper | wc -l) files"
  take
  ;;
take)
  take
  ;;
unpack)  # SET: unpack and install one set where it stands (tests/test_gpu_carry.py runs this half on a CPU)
  take
  unpack ${2:?set}
  install $2 $G/$2
  ;;
train)
  take
  unpack train
  [ -f $SITE/.installed ] || { install train $SITE; touch $SITE/.installed; }
  envs
  M=$G/models/SmolLM2-135M-Instruct
  [ -f $M/config.json ] || { timeout 200 $G/env/bin/python $REPO/fewshot/train_env/convert_gguf.py $M 2>&1 | tail -n 3; say "model made"; }
  ln -sfn $G/models $REPO/models
  [ "${TRAIN:-1}" = 1 ] || { say "train.sh not started (TRAIN=0: adapters come in with the adapters phase)"; exit 0; }
  train_pid && { say "train.sh already running"; exit 0; }
  (cd $REPO && FEWSHOT_DATA_DONE=1 CONFIG=configs/paper_debian.yaml setsid nohup bash train.sh > $G/res/train.out 2>&1 &
   echo $! > $G/train.pid)
  sleep 20; tail -n 3 $G/res/train.out
  say "train.sh started"
  ;;
adapters)  # adapters trained earlier, carried in as tars (.gpu/serve/adapters), instead of training again
  take
  mkdir -p $REPO/saves/paper_gpu
  for t in $C/adapters/*.tar; do tar -xf "$t" -C $REPO/saves/paper_gpu; done
  say "adapters here: $(ls $REPO/saves/paper_gpu | tr '\n' ' ')"
  ;;
serve)
  take
  unpack serve
  [ -f $VSITE/.installed ] || { install serve $VSITE; touch $VSITE/.installed; }
  envs
  $G/senv/bin/python -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__, 'gpu', torch.cuda.get_device_name(0))" 2>&1 | tail -n 5 | tee -a $LOG
  $G/senv/bin/vllm --version 2>&1 | tail -n 1 | tee -a $LOG
  grep -h "^\[train\]" $G/res/train.out | tail -n 4 || true
  ;;
eval)
  take
  t0=$SECONDS
  while train_pid && [ $((SECONDS - t0)) -lt ${WAIT:-400} ]; do sleep 5; done
  train_pid && { say "train.sh still running"; grep -h "^\[train\]" $G/res/train.out | tail -n 4 || true; exit 0; }
  grep -h "^\[train\]" $G/res/train.out | tail -n 3 || true
  envs
  name=${NAME:-gpu}
  t1=$SECONDS
  (cd $REPO && CONFIG=configs/paper_debian.yaml \
     FEWSHOT_SET="eval.mode=multi_lora;eval.out_dir=objs/paper_$name;train.log_dir=logs/paper_$name${EVAL_SET:+;$EVAL_SET}" \
     timeout ${LIMIT:-420} bash eval.sh ${EVAL_ARGS:-} 2>&1 | grep -v "it/s\]" > $G/res/eval_$name.out) || true
  say "eval.sh ($name) took $((SECONDS - t1)) s"
  tail -n 20 $G/res/eval_$name.out
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> $LOG
  (cd $REPO && tar -cf "$OUT/objs_$name.tar" objs/paper_$name logs/paper_$name logs/paper/*.jsonl -C $G res) || true
  ;;&
eval|fetch)
  n=0
  for d in $REPO/saves/paper_gpu/llm_train_*/; do d=${d%/}; b=$(basename $d)
    [ -f $d/done.json ] && ! grep -qx "$b" $G/sent.txt 2>/dev/null && [ $n -lt ${SEND:-6} ] || continue
    tar -cf "$OUT/$b.tar" -C $REPO/saves/paper_gpu "$b/done.json" "$b/adapter_config.json" "$b/adapter_model.safetensors" \
      $(cd $REPO/saves/paper_gpu && ls $b/*.json | grep -v -e tokenizer -e done.json -e adapter_config) && n=$((n + 1))
    echo "$b" >> $G/sent.txt
  done
  say "sent $n adapters; $(wc -l < $G/sent.txt 2>/dev/null || echo 0) so far"
  ;;
*) echo "unknown phase $PHASE" >&2; exit 2 ;;
esac
