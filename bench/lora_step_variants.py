"""One LoRA training micro-batch of the demo's shape (SmolLM2-135M, rank 16 on every projection, 2 rows of
--tokens, the answer's last 4 tokens labelled), forward and backward on one core as the train step runs it
(bf16 autocast, frozen Linear weights stored in bf16, the labelled tail only: fewshot/train_env/lf_train.py),
against two changes that would move the LLM's numbers:
  pure_bf16  the frozen embedding and norms in bf16 too, so the residual stream is bf16 (fp32 today)
  compile    the decoder through torch.compile (dynamic shapes), first in a fresh inductor cache, then warm
Milliseconds per micro-batch after two warm-up steps, the seconds of those first two steps (compiling) and
the loss. Each variant in its own process, one after another (never beside another job):
    .venv-train/bin/python bench/lora_step_variants.py --out bench/results/lora_step_variants_<cpu kind>.json"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def measure(variant: str, tokens: int, steps: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
    from fewshot.train_env.lf_train import IGNORE, frozen_linears_bf16, patch_trainer
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(ROOT / "models/SmolLM2-135M-Instruct"), dtype=torch.float32,
                                                 attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, lora_dropout=0.0))
    frozen_linears_bf16(model)
    base = model.get_base_model()
    if variant == "pure_bf16":
        for mod in base.modules():
            for p in mod.parameters(recurse=False):
                if not p.requires_grad and p.dtype == torch.float32:
                    p.data = p.data.to(torch.bfloat16)
    if variant.startswith("compile"):
        base.model.compile(dynamic=True)
    ids = torch.randint(10, 40000, (2, tokens))
    labels, mask = torch.full_like(ids, IGNORE), torch.ones_like(ids)
    labels[0, -4:] = ids[0, -4:]
    mask[1, -20:] = 0  # the shorter row of the pair, right-padded
    labels[1, -24:-20] = ids[1, -24:-20]
    patch_trainer()
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=tempfile.mkdtemp(), report_to=[], use_cpu=True,
                                                          bf16=True))
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = Trainer.compute_loss(trainer, model, dict(batch), num_items_in_batch=8)
        loss.backward()
        return float(loss.detach())
    t0 = time.perf_counter()
    step(), step()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    return {"variant": variant, "tokens": tokens, "first_two_steps_s": round(first, 1),
            "ms_per_micro_batch": round((time.perf_counter() - t0) / steps * 1000), "loss": round(loss, 4)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", default=["eager", "pure_bf16", "eager", "pure_bf16", "compile_cold",
                                                      "compile_warm"])
    ap.add_argument("--tokens", type=int, default=232)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.one, a.tokens, a.steps)))
        sys.exit(0)
    from fewshot.bench import machine
    from fewshot.fileio import atomic_write_json
    cache = tempfile.mkdtemp(prefix="inductor_")  # compile_cold starts it empty, compile_warm reuses it
    rows = []
    for v in a.variants:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(["taskset", "-c", str(a.core), sys.executable, __file__, "--one", v, "--tokens",
                              str(a.tokens), "--steps", str(a.steps)], env=env, capture_output=True, text=True)
        line = [s for s in out.stdout.splitlines() if s.startswith("{")]
        if out.returncode or not line:
            sys.exit(f"{v} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(line[-1]))
        print(json.dumps(rows[-1]), flush=True)
    res = {"what": "forward + backward of one LoRA micro-batch of the demo's shape on one core, by variant",
           "command": "bench/lora_step_variants.py " + " ".join(sys.argv[1:]), "machine": machine(), "rows": rows}
    if a.out:
        atomic_write_json(Path(a.out), res)
