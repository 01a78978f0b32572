"""Eager against SDPA attention in a training step on one CPU core, by sequence length: where
lf_train.EAGER_MAX_TOKENS comes from. A randomly initialised model of SmolLM2-135M's shape (30 layers,
576 wide, 9 query and 3 key/value heads; a 1000-token vocabulary, so the head does not dilute the
difference), micro-batch 2 with one row padded by a tenth, bf16 autocast where the CPU has native
bf16: seconds of forward + backward, the best of `--reps`, each implementation in turn.
    .venv-train/bin/python bench/attention_by_length.py --lengths 192 320 448 576 704 896 1280 --reps 2"""
import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[192, 320, 448, 576, 704, 896, 1280, 1792])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--out", help="default: bench/results/attention_by_length_<cpu kind>.json")
    a = ap.parse_args()
    os.sched_setaffinity(0, {a.core})
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from fewshot.bench import machine
    from fewshot.fileio import atomic_write_json
    torch.set_num_threads(1)
    hw = machine()
    bf16 = hw["native_bf16"]
    cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                      num_key_value_heads=3, vocab_size=1000, max_position_embeddings=4096, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    rows = []
    for impl in ("eager", "sdpa"):  # one untimed step each: first-call set-up is not attention
        model.config._attn_implementation = impl
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(input_ids=torch.randint(0, 1000, (2, 64)), labels=torch.randint(0, 1000, (2, 64))).loss.backward()
        model.zero_grad(set_to_none=True)
    for n in a.lengths:
        ids = torch.randint(0, 1000, (2, n))
        mask = torch.ones_like(ids)
        mask[1, -max(1, n // 10):] = 0
        best = {}
        for impl in ("eager", "sdpa") * a.reps:
            model.config._attn_implementation = impl
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
            loss.backward()
            model.zero_grad(set_to_none=True)
            best[impl] = min(best.get(impl, 1e9), time.perf_counter() - t0)
        rows.append({"tokens": n, "eager_s": round(best["eager"], 3), "sdpa_s": round(best["sdpa"], 3),
                     "eager_over_sdpa": round(best["eager"] / best["sdpa"], 2)})
        print(rows[-1], flush=True)
    out = a.out or f"bench/results/attention_by_length_{hw['cpu_kind']}.json"
    atomic_write_json(ROOT / out, {
        "what": "forward + backward of a SmolLM2-135M-shaped model, micro-batch 2, eager vs SDPA attention, one core",
        "command": "bench/attention_by_length.py", "precision": "bf16" if bf16 else "fp32",
        "machine": hw,
        "rows": rows, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
