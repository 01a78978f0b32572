"""The uncertain strategy: a typical (label-free) start at the smallest size, then each next size
bought in one round from a cheap proxy trained on the rows bought so far, and nothing else:
logistic regression on the frozen embeddings, breaking ties (small-text's BreakingTies: the
smallest gap between the two likeliest labels) over the unbought rows, then a diversity step
(k-means on the 10 x q most uncertain rows, the row nearest each centre), so one round does not
spend its q labels on near-copies of one confusing row. Labels are read only through the oracle,
only for bought rows."""
from __future__ import annotations

import numpy as np

from . import Strategy, typical

CANDIDATES_PER_PICK = 10


class _Proxy:
    """What small-text's query strategies call: predict_proba on the dataset (here the embeddings)."""
    def __init__(self, model):
        self.model = model

    def predict_proba(self, x):
        return self.model.predict_proba(x)


def margins(model, emb: np.ndarray, rest: np.ndarray, bought: np.ndarray, y: list, n: int) -> np.ndarray:
    """The n unbought rows with the smallest top-two gap, most uncertain first (small-text)."""
    from small_text.query_strategies import BreakingTies
    picked = BreakingTies().query(_Proxy(model), emb, rest, bought, np.asarray(y), n=n)
    return np.asarray(picked, int)


def diverse(emb: np.ndarray, cand: np.ndarray, q: int, seed: int) -> list[int]:
    """q rows of cand, one per k-means cluster (the one nearest its centre), in cand's order."""
    from sklearn.cluster import KMeans
    if len(cand) <= q:
        return [int(i) for i in cand]
    km = KMeans(n_clusters=q, random_state=seed, n_init=1).fit(emb[cand])
    d = km.transform(emb[cand])
    picks = {int(cand[np.argmin(d[:, c])]) for c in range(q)}
    for i in cand:  # clusters that share a nearest row: fill with the next most uncertain
        if len(picks) >= q:
            break
        picks.add(int(i))
    rank = {int(i): r for r, i in enumerate(cand)}
    return sorted(picks, key=rank.get)


def order(emb: np.ndarray, sizes: list[int], seed: int, oracle, length: int, start: list[int] = ()) -> list[int]:
    """`start`: rows already bought (the labelling plan continues from them); else a typical start."""
    from sklearn.linear_model import LogisticRegression
    emb = np.asarray(emb, dtype=np.float32)
    n = len(emb)
    length = min(length, n)
    if len(start):
        chosen = [int(i) for i in start]
    else:
        first = min(sizes[0], length)
        chosen = list(typical.order(emb, [first], seed, first)[:first])
    oracle.buy(chosen)
    fallback = None
    for b in sorted({s for s in sizes if s <= length} | {length}):
        q = b - len(chosen)
        if q <= 0:
            continue
        y = oracle.labels(chosen)
        taken = np.zeros(n, bool)
        taken[chosen] = True
        rest = np.nonzero(~taken)[0]
        if len(set(y)) < 2:  # one label bought so far: no proxy to train, keep covering the space
            fallback = fallback or typical.order(emb, [length], seed, length)
            picks = [i for i in fallback if not taken[i]][:q]
        else:
            model = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
            model.fit(emb[chosen], y)
            cand = margins(model, emb, rest, np.asarray(chosen), y, min(len(rest), CANDIDATES_PER_PICK * q))
            picks = diverse(emb, cand, q, seed)
        chosen += picks
        oracle.buy(picks)
    return chosen


STRATEGY = Strategy("uncertain", reads="the labels of the rows it bought, nothing else", rank=20, colour="#d62728",
                    order=lambda c: order(c.embed(), c.sizes, c.seed, c.oracle, c.length, c.start))
