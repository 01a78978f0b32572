"""Encoder fine-tune recipes (the config's sweep.encoder_recipes, by name) on the sweep split, over several
baseline seeds, two runs at a time (one core each, as the baselines step runs them): valid accuracy and
seconds of every (recipe, rows, seed), and the choice by the rule fixed in --rule before anything ran.
    .venv/bin/python bench/encoder_recipe_seeds.py --config configs/demo.yaml \
        --recipes floor100_lr1e-4_b8 floor100_lr1e-4_b4 floor100_lr5e-5_b4 --seeds 0 1 2 \
        --out bench/results/encoder_batch_demo_valid.json
Reads the data step's files (data/); trains under /tmp, writes only --out."""
import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fewshot.bench import machine  # noqa: E402
from fewshot.config import load_config  # noqa: E402
from fewshot.fileio import atomic_write_json  # noqa: E402

RULE = ("the current recipe (first named) is replaced only by a recipe whose mean valid accuracy over the "
        "sweep sizes and the seeds is at least its own; among those, the highest mean, a tie to the cheaper")


def one(job: dict) -> dict:
    """Train and score one (recipe, rows, seed) in this worker (pinned to its own core): the sweep's row."""
    from fewshot.baselines import split_texts
    from fewshot.manifest import load_manifest
    from fewshot.runs import eval_file_name
    from fewshot.sweep import encoder_recipe_row
    cfg = load_config(job["config"])
    valid = split_texts(cfg, eval_file_name(cfg.sweep.split))
    row = encoder_recipe_row(cfg, job["recipe"], job["rows"], job["seed"], valid, load_manifest(cfg)["labels"])
    return {**row, "core": os.sched_getaffinity(0).pop()}


def lane_init(cores) -> None:
    import torch
    os.sched_setaffinity(0, [cores.get()])
    torch.set_num_threads(1)


if __name__ == "__main__":
    import multiprocessing as mp
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--recipes", nargs="+", required=True, help="names in sweep.encoder_recipes; the first is the current")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = load_config(a.config)
    for r in a.recipes:
        if r not in cfg.sweep.encoder_recipes:
            sys.exit(f"{a.config}: sweep.encoder_recipes has no {r!r}")
    from fewshot.devices import cpu_malloc_env
    jobs = [{"config": a.config, "recipe": r, "rows": n, "seed": s} for r in a.recipes
            for n in cfg.sweep.sizes for s in a.seeds]
    jobs.sort(key=lambda j: -cfg.sweep.encoder_recipes[j["recipe"]].get("baselines.encoder_batch_size", 8))
    ctx = mp.get_context("spawn")
    cores = ctx.Queue()
    for c in sorted(os.sched_getaffinity(0))[:2]:
        cores.put(c)
    os.environ.update(cpu_malloc_env())
    with ctx.Pool(2, lane_init, (cores,)) as pool:
        rows = []
        for row in pool.imap_unordered(one, jobs):
            rows.append(row)
            print(json.dumps(row), flush=True)
    mean = {r: round(sum(x["accuracy"] for x in rows if x["recipe"] == r) / sum(x["recipe"] == r for x in rows), 4)
            for r in a.recipes}
    secs = {r: round(sum(x["seconds"] for x in rows if x["recipe"] == r), 1) for r in a.recipes}
    current = a.recipes[0]
    ok = [r for r in a.recipes if mean[r] >= mean[current]]
    chosen = max(ok, key=lambda r: (mean[r], -secs[r]))
    out = {"what": "encoder recipes on the sweep split, over seeds, two runs side by side (one core each)",
           "command": "bench/encoder_recipe_seeds.py " + " ".join(sys.argv[1:]), "machine": machine(),
           "rule": RULE, "recipes": {r: cfg.sweep.encoder_recipes[r] for r in a.recipes},
           "mean_accuracy": mean, "seconds": secs, "chosen": chosen,
           "rows": sorted(rows, key=lambda x: (a.recipes.index(x["recipe"]), x["rows"], x["seed"]))}
    atomic_write_json(Path(a.out), out)
    print(json.dumps({k: out[k] for k in ("mean_accuracy", "seconds", "chosen")}))
