"""Metrics: the shipped `evaluate` module (classification/) plus bootstrap intervals, and the
answer normalisation that decides whether a model's text is a label."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np

MODULE = Path(__file__).parent / "classification"


@lru_cache(maxsize=1)
def _metric():
    import evaluate
    return evaluate.load(str(MODULE))


def normalise(text: str) -> str:
    """Case, whitespace, surrounding quotes/brackets/punctuation do not decide correctness."""
    t = " ".join(str(text).split()).casefold()
    return re.sub(r"^[\s\"'`*\[\(\{<.:;,-]+|[\s\"'`*\]\)\}>.:;,!-]+$", "", t)


def match_label(answer: str, labels: list[str]) -> str | None:
    """The label the answer names after normalisation, or None (an invalid answer, never guessed)."""
    table = {normalise(lab): lab for lab in labels}
    return table.get(normalise(answer))


def compute(preds: list[str | None], golds: list[str], labels: list[str], n_boot: int = 1000,
            seed: int = 0) -> dict:
    """All metrics for one run; preds hold label names or None for invalid answers."""
    idx = {lab: i for i, lab in enumerate(labels)}
    p = [idx[x] if x is not None else -1 for x in preds]
    g = [idx[x] for x in golds]
    res = _metric().compute(predictions=p, references=g, num_labels=len(labels))
    res["labels"] = list(labels)
    res.update(bootstrap(np.array(p), np.array(g), len(labels), n_boot, seed))
    return res


def bootstrap(p: np.ndarray, g: np.ndarray, k: int, n_boot: int, seed: int) -> dict:
    """Percentile 95% intervals for accuracy and macro-F1 over rows resampled with replacement.
    Each resample's macro-F1 is scikit-learn's f1_score(labels=range(k), average="macro",
    zero_division=0), 2 tp / (predicted + true) per label, counted with bincount: the same numbers
    (tests), without its input checks, which took ~1.8 s of every run's 1000 resamples."""
    if n_boot <= 0 or len(g) == 0:
        return {}
    rng = np.random.default_rng(seed)
    accs, f1s = [], []
    for _ in range(n_boot):
        i = rng.integers(0, len(g), len(g))
        pi, gi = p[i], g[i]
        hit = pi == gi
        accs.append(float(np.mean(hit)))
        f1s.append(macro_f1(pi, gi, k, hit))
    q = lambda xs: [float(np.percentile(xs, 2.5)), float(np.percentile(xs, 97.5))]
    return {"accuracy_ci95": q(accs), "macro_f1_ci95": q(f1s), "bootstrap": n_boot}


def macro_f1(p: np.ndarray, g: np.ndarray, k: int, hit: np.ndarray | None = None) -> float:
    """Macro-F1 over labels 0..k-1 (an invalid answer, -1, is no label's prediction), 0 for a label
    neither predicted nor true: scikit-learn's f1_score with zero_division=0."""
    hit = (p == g) if hit is None else hit
    tp = np.bincount(g[hit], minlength=k)[:k]
    den = np.bincount(p[p >= 0], minlength=k)[:k] + np.bincount(g, minlength=k)[:k]
    f1 = np.divide(2.0 * tp, den, out=np.zeros(k), where=den > 0)
    return float(np.mean(f1))
