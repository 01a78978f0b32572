"""SetFit's body with and without the padding of its random pair batches (baselines.embed_unpadded):
seconds and valid accuracy per (rows, seed, chunk), one run per core as in the study. chunk 0 is the
padded batch (one forward per column, what sentence-transformers does).
    .venv/bin/python bench/setfit_padding.py --config configs/demo.yaml --sizes 16 32 64 128 --seeds 0 1 2 --chunks 0 4"""
import argparse
import json
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fewshot import baselines  # noqa: E402
from fewshot.config import load_config  # noqa: E402
from fewshot.bench import machine  # noqa: E402
from fewshot.runs import eval_file_name, train_file_name  # noqa: E402


def one(job):
    core, config, rows, seed, chunk = job
    os.sched_setaffinity(0, {core})
    import torch
    torch.set_num_threads(1)
    cfg = load_config(config)
    baselines.setfit_chunk = lambda: chunk or None
    tx, ty = baselines.split_texts(cfg, train_file_name(rows, seed, cfg.data))
    vx, vy = baselines.split_texts(cfg, eval_file_name("valid"))
    t0 = time.time()
    pred = baselines.setfit(tx, ty, vx, seed, cfg)
    row = {"rows": rows, "seed": seed, "chunk": chunk, "seconds": round(time.time() - t0, 1),
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
    ap.add_argument("--chunks", type=int, nargs="+", default=[0, 4])
    ap.add_argument("--out", default="bench/results/setfit_padding_demo_valid.json")
    a = ap.parse_args()
    # every (rows, seed) with each chunk in turn on one core, the heaviest first, alternating cores
    pairs = sorted(((r, s) for r in a.sizes for s in a.seeds), key=lambda p: -p[0])
    lanes = [[], []]
    for k, (r, s) in enumerate(pairs):
        chunks = a.chunks if k % 2 == 0 else a.chunks[::-1]
        lanes[k % 2] += [(k % 2, a.config, r, s, c) for c in chunks]
    with get_context("spawn").Pool(2) as pool:
        out = [row for part in pool.map(lane, lanes) for row in part]
    out.sort(key=lambda r: (r["rows"], r["seed"], r["chunk"]))
    summary = {}
    for c in a.chunks:
        mine = [r for r in out if r["chunk"] == c]
        summary[str(c)] = {"seconds": round(sum(r["seconds"] for r in mine), 1),
                           "mean_valid_accuracy": round(sum(r["valid_accuracy"] for r in mine) / len(mine), 4)}
        print(f"chunk {c or 'padded'}: {summary[str(c)]['seconds']} s in all, mean valid accuracy "
              f"{summary[str(c)]['mean_valid_accuracy']}")
    Path(a.out).write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "runs": out,
                                       "summary": summary}, indent=1) + "\n")
