"""How long the study will take here, before it starts: `python -m fewshot estimate` (study.sh prints it).

The work is counted from the config and the data step's manifest (rows x epochs x tokens to train,
rows x tokens to score, encoder steps, server starts); the speed is this machine's own, from a
three-second matrix-product probe (fp32, and bf16 where the CPU has it natively), scaled by what the
study achieved per unit of that probe on the CPU it was calibrated on (REFERENCE below, measured by
`python -m fewshot bench study`). So a CPU twice as fast at matrix products is estimated twice as
fast; what the probe does not see (memory bandwidth, vLLM's kernels for this CPU, start-up times)
is the estimate's error, measured only where the study was run (docs/benchmarks.md)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .config import Config
from .devices import cpu_has_native_bf16, cpu_kind, cpu_model, device_and_precision, has_gpu
from .manifest import load_manifest
from .runs import encoder_epochs, epochs_for, eval_file_name, icl_answer_modes, icl_sizes, run_names

# Calibrated on a 2-core AMD EPYC (avx2, fp32) with `python -m fewshot bench study` on configs/demo.yaml:
# each rate is the study's own throughput divided by the probe's GFLOP/s on that machine.
REFERENCE = {
    "cpu": "AMD EPYC (avx2), 2 cores, 2026-11-28",
    "probe_gflops": None,            # filled by calibrate(); the probe's fp32 GFLOP/s there
    "train_flop_share": None,        # LoRA training FLOPs (4 x params x tokens) per probe FLOP
    "serve_flop_share": None,        # scoring prefill FLOPs (2 x params x prompt tokens) per probe FLOP
    "icl_serve_flop_share": None,    # the same for in-context rows (own tokens; demonstrations cached)
    "train_start_s": None,           # per training run: LLaMA-Factory start-up and saving
    "merge_s": None,                 # per adapter: llamafactory-cli export
    "server_start_s": None,          # per vLLM server
    "encoder_row_pass_s": None,      # one encoder training row at the probe's reference speed
    "encoder_start_s": None,         # per encoder run: load, predict the evaluation rows
    "setfit_row_s": None,            # SetFit per training row (pairs, head, prediction)
    "setfit_start_s": None,
    "report_s": None,
}
MINILM_PARAMS = 22.7e6


def probe_gflops(dtype: str = "fp32", reps: int = 6, each_s: float = 0.4) -> float:
    """Matrix products of 1024 x 1024 on every core this process may use: the best GFLOP/s of a
    few short bursts (the best is steadier than the mean: +-4% between calls on one machine)."""
    import torch
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(1024, 1024, dtype=dt), torch.randn(1024, 1024, dtype=dt)
    a @ b  # warm-up
    best = 0.0
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < each_s:
            a @ b
            n += 1
        best = max(best, 2 * 1024 ** 3 * n / (time.perf_counter() - t0) / 1e9)
    return best


def model_params(path: str) -> float:
    """Parameters of a local model folder, from its safetensors headers (no weights read)."""
    total = 0
    for f in Path(path).glob("*.safetensors"):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return float(total)


def work(cfg: Config) -> dict:
    """What the study will compute, counted from the config and the manifest."""
    man = load_manifest(cfg)
    files = man["files"]
    tok = lambda name: files[name].get("tokens", {}).get("mean", 0.0)
    ev = eval_file_name(cfg.eval.split)
    n_eval = files[ev].get("size") or man["split_rows"].get(cfg.eval.split, 0)
    runs = run_names(cfg)
    train_tokens = [n * epochs_for(cfg, n) * tok(name) for name, n, _ in runs]
    icl = len(icl_sizes(cfg)) * len(cfg.data.seeds) * len(icl_answer_modes(cfg)) if cfg.eval.icl else 0
    b = cfg.baselines
    enc_rows = [max(1, math.ceil(encoder_epochs(b, n) * math.ceil(n / b.encoder_batch_size))) * b.encoder_batch_size
                for n in cfg.data.sizes] if "encoder" in b.methods else []
    return {"params": model_params(cfg.model.name_or_path), "train_runs": len(runs), "train_tokens": sum(train_tokens),
            "eval_rows": n_eval, "eval_tokens_per_row": tok(ev), "adapters": len(runs),
            "base_runs": (2 if cfg.eval.zero_shot else 0), "icl_runs": icl,
            "encoder_row_passes": sum(enc_rows) * len(b.seeds),
            "encoder_runs": (len(cfg.data.sizes) * len(b.seeds)) if "encoder" in b.methods else 0,
            "setfit_rows": sum(cfg.data.sizes) * len(b.seeds) if "setfit" in b.methods else 0,
            "setfit_runs": len(cfg.data.sizes) * len(b.seeds) if "setfit" in b.methods else 0}


def estimate(cfg: Config, w: dict | None = None, gflops: dict | None = None) -> dict:
    """Minutes per stage on this machine; None where there is nothing to scale from (a GPU)."""
    r = REFERENCE
    if has_gpu() or r["probe_gflops"] is None:
        return {}
    w = w or work(cfg)
    precision = device_and_precision(cfg)[1]
    g = gflops or {"fp32": probe_gflops("fp32")}
    if precision == "bf16" and "bf16" not in g:
        g["bf16"] = probe_gflops("bf16")
    llm = g.get(precision, g["fp32"]) * 1e9
    fp32 = g["fp32"] * 1e9
    scale = r["probe_gflops"] * 1e9 / fp32  # start-ups and encoders: in proportion to fp32 speed
    train = w["train_runs"] * r["train_start_s"] * scale + 4 * w["params"] * w["train_tokens"] / (r["train_flop_share"] * llm)
    row = 2 * w["params"] * w["eval_tokens_per_row"] * w["eval_rows"]
    servers = w["adapters"] + (1 if w["base_runs"] or w["icl_runs"] else 0)
    evals = (servers * r["server_start_s"] + w["adapters"] * r["merge_s"]) * scale \
        + (w["adapters"] + w["base_runs"]) * row / (r["serve_flop_share"] * llm) \
        + w["icl_runs"] * row / (r["icl_serve_flop_share"] * llm)
    base = (w["encoder_runs"] * r["encoder_start_s"] + w["encoder_row_passes"] * r["encoder_row_pass_s"]
            + w["setfit_runs"] * r["setfit_start_s"] + w["setfit_rows"] * r["setfit_row_s"]) * scale
    out = {"train": train, "eval": evals, "baselines": base, "report": r["report_s"] * scale}
    return {k: round(v / 60, 1) for k, v in {**out, "total": sum(out.values())}.items()}


def describe(cfg: Config) -> str:
    if has_gpu():
        return "estimate: none for a GPU box (the estimate is calibrated on CPUs only)"
    g = {"fp32": probe_gflops("fp32")}
    if cpu_has_native_bf16():
        g["bf16"] = probe_gflops("bf16")
    est = estimate(cfg, gflops=g)
    if not est:
        return "estimate: not calibrated yet"
    stages = ", ".join(f"{k} ~{v:g}" for k, v in est.items() if k != "total")
    speed = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in g.items())
    return (f"estimate: ~{est['total']:g} min on this {cpu_model()} ({cpu_kind()}; probe {speed}): {stages} min "
            f"(calibrated on {REFERENCE['cpu']}; elsewhere its error is not measured)")


def run(cfg: Config) -> int:
    print(describe(cfg), flush=True)
    return 0
