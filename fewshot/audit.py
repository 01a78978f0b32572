"""The data audit: what in a labelled set nobody here has seen would make the study's numbers wrong,
found in the data step before anything is trained and written to data/audit.json (the report shows it
before the answer). Duplicates (exact after case/space folding; near: cosine of the shipped encoder's
frozen embeddings at or above data.near_duplicate_cosine) are grouped so that no group straddles
train/valid/test; likely label errors come from cleanlab on out-of-fold probabilities of a logistic
regression over those embeddings (test rows scored by a model fitted on train alone); the warnings are
the ones that change what a subset can teach (sizes under the label count, labels absent from a
subset, label names a free answer would confuse)."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

EXAMPLES = 5          # row numbers shown per finding
LONG_FACTOR = 10      # a document this many times the median length (characters) is "very long"


def fold(text: str) -> str:
    return " ".join(text.lower().split())


class Groups:
    """Union-find over row ids: rows joined by any duplicate link share one group."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def ids(self) -> list[int]:
        return [self.find(i) for i in range(len(self.parent))]


def exact_pairs(texts: list[str]) -> list[tuple[int, int]]:
    first: dict[str, int] = {}
    pairs = []
    for i, t in enumerate(texts):
        k = fold(t)
        if k in first:
            pairs.append((first[k], i))
        else:
            first[k] = i
    return pairs


def near_pairs(emb: np.ndarray, cosine: float) -> list[tuple[int, int, float]]:
    """Pairs (i < j) of unit-length embeddings with cosine >= the threshold (sklearn's radius search)."""
    from sklearn.neighbors import NearestNeighbors
    if len(emb) < 2:
        return []
    nn = NearestNeighbors(radius=max(1e-9, 1.0 - cosine), metric="cosine").fit(emb)
    dist, idx = nn.radius_neighbors(emb)
    return [(i, int(j), round(1.0 - float(d), 4)) for i, (ds, js) in enumerate(zip(dist, idx))
            for d, j in zip(ds, js) if j > i]


def duplicate_groups(texts: list[str], emb: np.ndarray | None, cosine: float) -> tuple[list[int], dict]:
    """(group id per row, findings): exact duplicates always, near ones where embeddings are given."""
    g = Groups(len(texts))
    exact = exact_pairs(texts)
    for i, j in exact:
        g.join(i, j)
    near = [] if emb is None else [p for p in near_pairs(emb, cosine) if fold(texts[p[0]]) != fold(texts[p[1]])]
    for i, j, _ in near:
        g.join(i, j)
    return g.ids(), {"exact_pairs": exact, "near_pairs": near}


def label_issues(train_emb: np.ndarray, train_y: list[str], test_emb: np.ndarray | None = None,
                 test_y: list[str] | None = None) -> dict:
    """Rows cleanlab finds likely mislabelled: train from 5-fold out-of-fold probabilities, test from a
    model fitted on all of train (no test row trains the model that judges it)."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    counts = Counter(train_y)
    if len(counts) < 2 or min(counts.values()) < 2:
        return {"skipped": "a label has fewer than 2 train rows: no out-of-fold probabilities"}
    classes = sorted(counts)
    y = np.array([classes.index(v) for v in train_y])
    folds = min(5, min(counts.values()))
    clf = LogisticRegression(max_iter=2000, C=1.0)
    oof = cross_val_predict(clf, train_emb, y, cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                            method="predict_proba")
    out = {"train": [int(i) for i in find_label_issues(y, oof, return_indices_ranked_by="self_confidence")],
           "model": f"logistic regression on frozen embeddings, {folds}-fold out-of-fold on train"}
    if test_emb is not None and test_y:
        probs = clf.fit(train_emb, y).predict_proba(test_emb)
        ty = np.array([classes.index(v) for v in test_y])
        if len(set(ty)) == len(classes):
            out["test"] = [int(i) for i in find_label_issues(ty, probs, return_indices_ranked_by="self_confidence")]
        else:  # cleanlab wants every class present among the given labels
            keep = [k for k in range(len(classes)) if k in set(ty)]
            sub = probs[:, keep] / probs[:, keep].sum(axis=1, keepdims=True)
            remap = np.array([keep.index(v) for v in ty])
            out["test"] = [int(i) for i in find_label_issues(remap, sub, return_indices_ranked_by="self_confidence")]
    return out


def label_name_warnings(labels: list[str]) -> list[str]:
    """Names a person or a free answer would confuse: equal after case/space folding, or one a prefix of
    another ("game" is read as "games" by a model that answers freely)."""
    out = []
    by_fold = defaultdict(list)
    for lab in labels:
        by_fold[fold(lab)].append(lab)
    out += [f"labels differ only by case or spacing: {', '.join(repr(v) for v in same)}"
            for same in by_fold.values() if len(same) > 1]
    for a in labels:
        for b in labels:
            if a != b and fold(a) != fold(b) and fold(b).startswith(fold(a)):
                out.append(f"label {a!r} is a prefix of label {b!r}: a free answer {a!r} cannot tell them apart")
    return out


def subset_warnings(labels: list[str], sizes: list[int], subsets: dict[str, list[str]]) -> list[str]:
    """Sizes under the label count, and labels absent from a subset (file name -> its labels)."""
    out = [f"data.sizes: {n} rows cannot hold all {len(labels)} labels" for n in sorted(sizes) if n < len(labels)]
    for name, ys in subsets.items():
        absent = [lab for lab in labels if lab not in set(ys)]
        if absent:
            shown = ", ".join(repr(a) for a in absent[:EXAMPLES]) + (" ..." if len(absent) > EXAMPLES else "")
            out.append(f"{name}: {len(absent)} of {len(labels)} labels absent ({shown}): no method can learn them there")
    return out


def length_findings(texts: list[str], refs: list[str]) -> dict:
    """Documents over LONG_FACTOR x the median length; `refs` names each row as its source does."""
    lengths = np.array([len(t) for t in texts]) if texts else np.zeros(0)
    if not len(lengths):
        return {"very_long": 0, "rows": []}
    limit = LONG_FACTOR * max(1.0, float(np.median(lengths)))
    long_rows = [int(i) for i in np.argsort(-lengths) if lengths[i] > limit]
    return {"median_chars": int(np.median(lengths)), "max_chars": int(lengths.max()), "very_long_over_chars": int(limit),
            "very_long": len(long_rows), "rows": [refs[i] for i in long_rows[:EXAMPLES]]}


def summary_line(audit: dict) -> str:
    """One line for a clean audit; the report shows a box with every finding otherwise."""
    dup = audit["duplicates"]
    action = dup["action"] + (f": {dup['dropped']} rows dropped" if dup.get("dropped") else "")
    parts = [f"{dup['exact_rows']} exact and {dup['near_rows']} near-duplicate rows ({dup['straddling_groups']} groups "
             f"across splits, {action})" if dup["exact_rows"] + dup["near_rows"] else "no duplicates"]
    li = audit.get("label_issues", {})
    if "train" in li:
        parts.append(f"{li['train']} train and {li['test']} scored test rows likely mislabelled (cleanlab)")
    if audit["control_tokens"]["documents"]:
        parts.append(f"{audit['control_tokens']['documents']} documents held chat-control tokens (made plain text)")
    if audit["warnings"]:
        parts.append(f"{len(audit['warnings'])} warning(s)")
    return "; ".join(parts)


def is_clean(audit: dict) -> bool:
    return not (audit["duplicates"]["straddling_groups"] or audit["warnings"] or audit["control_tokens"]["documents"])


def report(cfg, splits: dict[str, list[dict]], labels: list[str], emb: dict | None, duplicates: dict,
           control_tokens: dict, scored: dict[str, list[int]], subsets: dict[str, list[str]]) -> dict:
    """data/audit.json: every finding with counts and a few example rows (as the source numbers them)."""
    d = cfg.data
    train = splits["train"]
    counts = Counter(r["label"] for r in train)
    smallest = min(d.sizes)
    rare = sorted(lab for lab in labels if counts[lab] / max(1, len(train)) * smallest < 1)
    warnings = subset_warnings(labels, d.sizes, subsets) + label_name_warnings(labels)
    if rare:
        warnings.append(f"{len(rare)} label(s) expect under one row in the {smallest}-row subsets "
                        f"({', '.join(repr(x) for x in rare[:EXAMPLES])}{' ...' if len(rare) > EXAMPLES else ''})")
    if duplicates["straddling_groups"]:
        n = len(duplicates.get("scored_with_train_duplicate", {}).get("test", []))
        warnings.append(f"{duplicates['straddling_groups']} duplicate group(s) straddle train/valid/test "
                        f"(data.duplicates: keep): {n} of the {len(scored['test'])} scored test rows have a "
                        f"duplicate in train, so test accuracy may be inflated")
    out = {"rows": {s: len(v) for s, v in splits.items()}, "labels": len(labels),
           "duplicates": duplicates, "control_tokens": control_tokens,
           "lengths": length_findings([r["text"] for v in splits.values() for r in v],
                                      [r["_src"] for v in splits.values() for r in v]),
           "class_counts_train": dict(sorted(counts.items())), "rare_labels": rare, "warnings": warnings}
    if emb is not None and d.audit == "full":
        test = [splits["test"][i] for i in scored["test"]]
        li = label_issues(emb["train"], [r["label"] for r in train], emb["test"][scored["test"]], [r["label"] for r in test])
        if "train" in li:
            li = {"model": li["model"], "train": len(li["train"]), "test": len(li.get("test", [])),
                  "train_rows": [{"row": train[i]["_src"], "label": train[i]["label"], "text": train[i]["text"][:160]}
                                 for i in li["train"][:EXAMPLES]],
                  "test_rows": [{"row": test[i]["_src"], "label": test[i]["label"], "text": test[i]["text"][:160]}
                                for i in li.get("test", [])[:EXAMPLES]],
                  "test_scored": len(test)}
        out["label_issues"] = li
    out["summary"] = summary_line(out)
    out["clean"] = is_clean(out)
    return out


def _read(data_dir: str):
    """(path of the data step's audit.json, its findings or None when there is none)."""
    import json
    from pathlib import Path
    from .manifest import AUDIT
    p = Path(data_dir) / AUDIT
    return p, (json.loads(p.read_text()) if p.exists() else None)


def line(data_dir: str) -> str:
    """The audit in one line for the report's first screen, pointing at its box below when it found anything."""
    p, a = _read(data_dir)
    if a is None:
        return f"*Data audit: none in {p} (rerun the data step).*"
    return f"**Data audit**: {a['summary']}" + ("." if a.get("clean") else " ([what it found](#The-data-audit)).")


def markdown(data_dir: str) -> str:
    """The audit's box in the report: one line when clean, the findings when not."""
    p, a = _read(data_dir)
    if a is None:
        return line(data_dir) + "\n\n"
    head = f"**Data audit**: {a['summary']} (`{p}`)."
    if a.get("clean"):
        return head + "\n\n"
    box = [head] + [f"- {w}" for w in a["warnings"]]
    dup = a["duplicates"]
    if dup["examples"]:
        box.append(f"- duplicate groups, e.g. {'; '.join(' = '.join(g) for g in dup['examples'][:3])}")
    if a["control_tokens"]["documents"]:
        box.append(f"- chat-control tokens in {a['control_tokens']['documents']} document(s), e.g. "
                   f"{', '.join(a['control_tokens']['examples'][:3])}: a space now breaks each one, on both sides")
    return "\n".join("> " + x for x in box) + "\n\n"
