"""The data audit on real text: the shipped Debian set as the demo reads it (its own splits, fixed per source
package), the same rows pooled into one file as a scrape would give them (so the study carves the splits
and near-duplicate siblings such as foo / foo-data could land on both sides), and the film-review
snippets of bench/selection_check.py pooled likewise. For each: what the audit found, and for the pooled
files the duplicate groups a plain carve would have split across train and test (data.duplicates: keep)
against none with the default (group). Also the near-duplicate pairs at several cosines, with examples
next to the chosen threshold (data.near_duplicate_cosine).

    .venv/bin/python bench/audit_check.py          # -> bench/results/audit_check.json"""
from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fewshot.audit import near_pairs  # noqa: E402
from fewshot.config import load_config  # noqa: E402
from fewshot.data import build  # noqa: E402

spec = importlib.util.spec_from_file_location("selection_check", Path(__file__).with_name("selection_check.py"))
sc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sc)

WORK = Path("bench/sets/audit")
COSINES = (0.99, 0.97, 0.95, 0.93, 0.90)


def pooled(name: str) -> Path:
    """All rows of a set in one JSONL (no split column): what a person's own file often is."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{name}_pooled.jsonl"
    if name == "debian":
        from fewshot.corpus import debian_sections as deb
        rows = [r for split in deb.load().values() for r in split]
    else:
        tx, ty, vx, vy = sc.load(name)
        rows = [{"text": t, "label": y} for t, y in zip(tx + vx, ty + vy)]
    path.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows))
    return path


def audit(source: str, out: str, **extra) -> dict:
    sets = [f"data.source={source}", f"data.out_dir={out}", "data.eval_size=null"] + [f"{k}={v}" for k, v in extra.items()]
    cfg = load_config("configs/demo.yaml", sets)
    t0 = time.time()
    build(cfg)
    a = json.loads((Path(out) / "audit.json").read_text())
    a["seconds"] = round(time.time() - t0, 1)
    return a


def thresholds(out: str) -> dict:
    """Near-duplicate pairs at several cosines, from the embeddings the audit cached, with examples."""
    emb_files = sorted(Path(out, "embeddings").glob("*.npy"), key=lambda p: p.stat().st_mtime)
    emb = np.load(emb_files[-1])
    rows = [json.loads(x) for x in open(pooled_path[out])]
    pairs = near_pairs(emb, min(COSINES))
    res = {f"{c:.2f}": sum(1 for p in pairs if p[2] >= c) for c in COSINES}
    edge = sorted([p for p in pairs if 0.94 <= p[2] < 0.96], key=lambda p: p[2])
    res["examples_near_0.95"] = [{"cosine": c, "a": rows[i]["text"][:140], "b": rows[j]["text"][:140],
                                  "labels": [rows[i]["label"], rows[j]["label"]]} for i, j, c in edge[:: max(1, len(edge) // 4)][:4]]
    return res


def demo_inflation(data_dir: str = "data", objs_dir: str = "objs") -> dict:
    """Each demo run's test accuracy on its scored rows, and without the rows that have a duplicate in
    train (from the demo's own audit and predictions): what the straddling groups are worth."""
    from fewshot.fileio import read_jsonl
    a = json.loads(Path(data_dir, "audit.json").read_text())
    leaked = set(a["duplicates"].get("scored_with_train_duplicate", {}).get("test", []))
    out = {"scored_rows_with_train_duplicate": sorted(leaked), "runs": {}}
    for pred in sorted(Path(objs_dir).glob("*/predictions.jsonl")):
        rs = read_jsonl(pred)
        ok = [r["pred"] == r["label"] for r in rs]
        rest = [r["pred"] == r["label"] for r in rs if r["i"] not in leaked]
        out["runs"][pred.parent.name] = [round(float(np.mean(ok)), 4), round(float(np.mean(rest)), 4)]
    diffs = [a - b for a, b in out["runs"].values()]
    out["largest_change"] = round(max(map(abs, diffs)), 4) if diffs else None
    return out


def flip_check(share: float = 0.05, seed: int = 0) -> dict:
    """cleanlab's finding on the shipped train split with a known share of labels flipped to another
    label at random: precision and recall of the rows it flags against the flipped ones (the shipped
    labels count as right, so its flags on unflipped rows count against precision)."""
    from fewshot.audit import label_issues
    from fewshot.corpus import debian_sections as deb
    from fewshot.embeddings import embed
    cfg = load_config("configs/demo.yaml", ["data.out_dir=bench/sets/audit/debian"])
    train = deb.load()["train"]
    emb = embed(cfg, [" ".join(r["text"].split()) for r in train])
    rng = np.random.default_rng(seed)
    labels = [r["label"] for r in train]
    names = sorted(set(labels))
    flipped = set(rng.choice(len(train), int(share * len(train)), replace=False).tolist())
    noisy = [rng.choice([n for n in names if n != y]) if i in flipped else y for i, y in enumerate(labels)]
    clean_flags = set(label_issues(emb, labels)["train"])
    flags = set(label_issues(emb, noisy)["train"])
    hit = len(flags & flipped)
    return {"rows": len(train), "flipped": len(flipped), "flagged": len(flags), "flagged_among_flipped": hit,
            "precision": round(hit / max(1, len(flags)), 3), "recall": round(hit / len(flipped), 3),
            "flagged_without_flips": len(clean_flags)}


pooled_path: dict[str, Path] = {}

if __name__ == "__main__":
    res = {"cpu": sc.cpu_line()}
    if Path("objs").exists() and Path("data/audit.json").exists():
        res["demo_inflation"] = demo_inflation()
        print("demo: accuracy with / without the scored test rows that have a duplicate in train, largest change",
              res["demo_inflation"]["largest_change"])
    res["debian_given_splits"] = audit("debian", "bench/sets/audit/debian", **{"data.duplicates": "keep"})
    res["debian_given_splits_drop"] = audit("debian", "bench/sets/audit/debian", **{"data.duplicates": "drop"})
    for name in ("debian", "rotten"):
        src = pooled(name)
        out = f"bench/sets/audit/{name}_pooled"
        pooled_path[out] = src
        res[f"{name}_pooled_keep"] = audit(str(src), out, **{"data.duplicates": "keep"})
        res[f"{name}_pooled_group"] = audit(str(src), out, **{"data.duplicates": "group"})
        res[f"{name}_pooled_thresholds"] = thresholds(out)
    res["debian_flip_check"] = flip_check()
    print("debian, 5% of train labels flipped:", res["debian_flip_check"])
    Path("bench/results/audit_check.json").write_text(json.dumps(res, indent=1))
    for k, v in res.items():
        if isinstance(v, dict) and "summary" in v:
            print(f"{k}: {v['summary']} ({v['seconds']:.0f} s)")
        elif isinstance(v, dict):
            print(k, {a: b for a, b in v.items() if not a.startswith("examples")})
