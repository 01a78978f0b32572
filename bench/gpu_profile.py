"""Where a LoRA training step's time goes on a GPU: wall time per micro-step against the time the
GPU spends in kernels (torch.profiler), at the original study's micro-batch (2, gradient checkpointing on)
and the fast mode's (8, off). Wall time far above kernel time means the step is bound by launch
and Python overhead, not by the card; comparing with LLaMA-Factory's samples/s shows the Trainer's
own share. Prints one JSON object.
    python bench/gpu_profile.py MODEL_DIR
    python bench/gpu_profile.py --glm-dims OUT_DIR [--build-only]   (first saves random weights of GLM-4-9B's size)"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch

SEQ = 240  # about the built-in set's rows in tokens, prompt and answer


def build_glm_dims(out: Path) -> None:
    """A Llama-architecture model with GLM-4-9B's sizes (hidden 4096, 40 layers, GQA 32/2, MLP 13696,
    vocab 151552) and SmolLM2's tokenizer: the 9B-class compute without the 9B download."""
    from transformers import LlamaConfig, LlamaForCausalLM
    like = out.parent / "SmolLM2-135M-Instruct"
    if (out / "config.json").exists():
        return
    base = json.loads((like / "config.json").read_text())
    keep = {k: v for k, v in base.items()
            if k not in ("architectures", "_name_or_path", "transformers_version", "dtype", "torch_dtype")}
    cfg = LlamaConfig(**{**keep, "hidden_size": 4096, "num_hidden_layers": 40, "num_attention_heads": 32,
                         "num_key_value_heads": 2, "intermediate_size": 13696, "vocab_size": 151552,
                         "head_dim": 128, "tie_word_embeddings": False})
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(out)
    for f in like.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template", "generation_config")):
            shutil.copy(f, out / f.name)
    del model
    torch.cuda.empty_cache()


def profile(model_dir: Path) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda()
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    model.enable_input_require_grads()
    out = {"model": str(model_dir), "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
           "seq_len": SEQ, "gpu": torch.cuda.get_device_name()}
    for name, mb, ckpt in (("seed", 2, True), ("fast", 8, False)):
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
        model.train()
        ids = torch.randint(100, 40000, (mb, SEQ), device="cuda")

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        n = 10
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / n
        acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        ev = prof.key_averages()
        kernel = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in ev) / 1e6 / 3
        launches = sum(e.count for e in ev if e.key.startswith(("cudaLaunchKernel", "cuLaunchKernel"))) / 3
        model.zero_grad(set_to_none=True)
        out[name] = {"micro_batch": mb, "gradient_checkpointing": ckpt, "wall_s": round(wall, 4),
                     "gpu_kernel_s": round(kernel, 4), "gpu_busy": round(kernel / wall, 3),
                     "kernel_launches": int(launches), "rows_per_s_fwd_bwd": round(mb / wall, 1),
                     "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1)}
    out["fast_over_seed_rows_per_s"] = round(out["fast"]["rows_per_s_fwd_bwd"] / out["seed"]["rows_per_s_fwd_bwd"], 2)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--glm-dims":
        t0 = time.time()
        build_glm_dims(Path(args[1]))
        print(f"built {args[1]} in {time.time() - t0:.0f} s", file=sys.stderr)
        if "--build-only" in args:
            sys.exit(0)
        args = args[1:]
    print(json.dumps(profile(Path(args[0]))))
