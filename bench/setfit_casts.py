"""SetFit's body in bf16 with autocast's weight copies refreshed after every update (baselines.fresh_casts,
"fresh") against the copies made at the first forward and kept for the whole run ("stale", what one
autocast context around trainer.train() did before): seconds and valid accuracy per (rows, seed), one
run per core as in the study, each pair's variants on one core in turn.
    .venv/bin/python bench/setfit_casts.py --config configs/demo.yaml --sizes 16 32 64 128 --seeds 0 1 2"""
import argparse
import json
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fewshot import baselines  # noqa: E402
from fewshot.bench import machine  # noqa: E402
from fewshot.config import load_config  # noqa: E402
from fewshot.runs import eval_file_name, train_file_name  # noqa: E402


def one(job):
    core, config, rows, seed, variant = job
    os.sched_setaffinity(0, {core})
    import torch
    from transformers import TrainerCallback
    torch.set_num_threads(1)
    cfg = load_config(config)
    if not baselines.encoder_bf16(cfg):
        raise SystemExit("this CPU runs SetFit in fp32: no autocast, nothing to compare")
    if variant == "stale":  # no refresh: the copies of the first forward serve the whole run
        baselines.fresh_casts = lambda: TrainerCallback()
    tx, ty = baselines.split_texts(cfg, train_file_name(rows, seed, cfg.data))
    vx, vy = baselines.split_texts(cfg, eval_file_name("valid"))
    t0 = time.time()
    pred = baselines.setfit(tx, ty, vx, seed, cfg)
    row = {"rows": rows, "seed": seed, "variant": variant, "seconds": round(time.time() - t0, 1),
           "valid_accuracy": round(sum(p == y for p, y in zip(pred, vy)) / len(vy), 4)}
    print(row, flush=True)
    return row


def lane(jobs):
    return [one(j) for j in jobs]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default=None, help="default: bench/results/setfit_casts_<cpu kind>.json")
    a = ap.parse_args()
    variants = ["stale", "fresh"]
    pairs = sorted(((r, s) for r in a.sizes for s in a.seeds), key=lambda p: -p[0])
    lanes = [[], []]
    for k, (r, s) in enumerate(pairs):
        lanes[k % 2] += [(k % 2, a.config, r, s, v) for v in (variants if k % 4 < 2 else variants[::-1])]
    with get_context("spawn").Pool(2) as pool:
        out = [row for part in pool.map(lane, lanes) for row in part]
    out.sort(key=lambda r: (r["rows"], r["seed"], r["variant"]))
    summary = {}
    for v in variants:
        mine = [r for r in out if r["variant"] == v]
        by_size = {n: round(sum(r["valid_accuracy"] for r in mine if r["rows"] == n) / len(a.seeds), 4) for n in a.sizes}
        summary[v] = {"seconds": round(sum(r["seconds"] for r in mine), 1), "mean_valid_accuracy_by_rows": by_size,
                      "mean_valid_accuracy": round(sum(r["valid_accuracy"] for r in mine) / len(mine), 4)}
        print(f"{v}: {summary[v]['seconds']} s in all, mean valid accuracy {summary[v]['mean_valid_accuracy']} "
              f"(by rows: {by_size})")
    out_path = Path(a.out or f"bench/results/setfit_casts_{machine()['cpu_kind']}.json")
    out_path.write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "runs": out,
                                    "summary": summary}, indent=1) + "\n")
